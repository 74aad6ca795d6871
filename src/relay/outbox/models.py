from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from relay.db.base import Base, utcnow
from relay.outbox.states import DeliveryStatus


def _one_of(column: str, values: type[DeliveryStatus]) -> str:
    return f"{column} IN ({', '.join(repr(value.value) for value in values)})"


# The invariants of the delivery state machine, enforced by the database so that no write,
# however it is made, can leave a row in a state the claim and the API do not expect.
DELIVERY_INVARIANTS = {
    "status": _one_of("status", DeliveryStatus),
    # A lease is one thing: who and until when.
    "lease_whole": "(locked_by IS NULL) = (locked_until IS NULL)",
    "lease_pending": "locked_by IS NULL OR status = 'pending'",
    # Held (paused, breaker open) and parked (over a limit) rows wait, nobody holds them.
    "held_waiting": "NOT held OR (status = 'pending' AND locked_by IS NULL)",
    "parked_waiting": "NOT parked OR (status = 'pending' AND locked_by IS NULL AND NOT held)",
    "completed_when_finished": "(status = 'pending') = (completed_at IS NULL)",
    "attempts_counted": "attempts >= 0",
}

ATTEMPT_INVARIANTS = {
    "outcome": _one_of("outcome", DeliveryStatus),
    "attempt_number": "attempt_number >= 1",
    "duration": "duration_ms >= 0",
}


class Delivery(Base):
    """One event owed to one subscription: the outbox row the dispatcher claims."""

    __tablename__ = "deliveries"
    __table_args__ = (
        *(CheckConstraint(rule, name=name) for name, rule in DELIVERY_INVARIANTS.items()),
        # The claim query reads only pending rows that no open breaker holds and no limit
        # parked, so the index holds only those: its size follows the live backlog, not the
        # history, and one subscription's parked backlog never stands in front of the others.
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending' AND NOT held AND NOT parked"),
        ),
        # A parked subscription's deliveries, oldest first, as it gets room again.
        Index(
            "ix_deliveries_parked",
            "subscription_id",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'pending' AND parked"),
        ),
        # The claim counts what every worker holds for a subscription: as many rows as are in
        # flight, whatever the backlog.
        Index(
            "ix_deliveries_leased",
            "subscription_id",
            "locked_until",
            postgresql_where=text("locked_by IS NOT NULL AND status = 'pending'"),
        ),
        Index(
            "ix_deliveries_pending_subscription",
            "subscription_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # Ordered subscriptions look for an earlier pending delivery of the same subject.
        Index(
            "ix_deliveries_pending_subject",
            "subscription_id",
            "subject_key",
            "event_timestamp",
            postgresql_where=text("status = 'pending' AND subject_key IS NOT NULL"),
        ),
        Index("ix_deliveries_subscription_id_id", "subscription_id", "id"),
        Index("ix_deliveries_event_id", "event_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), nullable=False
    )
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    held: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # Over its subscription's max_concurrency, rate limit or a worker's share when last looked
    # at by a claim; waits out of the due index until its subscription has room.
    parked: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    subject_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    event_timestamp: Mapped[datetime] = mapped_column(nullable=False)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class DeliveryAttempt(Base):
    """One HTTP attempt of a delivery: the per-webhook delivery log."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        *(CheckConstraint(rule, name=name) for name, rule in ATTEMPT_INVARIANTS.items()),
        Index("ix_delivery_attempts_delivery_id_attempt", "delivery_id", "attempt_number"),
        Index("ix_delivery_attempts_subscription_id_id", "subscription_id", "id"),
        # A subscription's attempts that did not succeed, newest first (the console's switch).
        Index(
            "ix_delivery_attempts_errors",
            "subscription_id",
            "id",
            postgresql_where=text("outcome <> 'succeeded'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False
    )
    subscription_id: Mapped[str] = mapped_column(String(40), nullable=False)
    attempt_number: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = mapped_column(nullable=False)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)
    request_url: Mapped[str] = mapped_column(Text, nullable=False)
    request_headers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_class: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    decision: Mapped[str] = mapped_column(Text, nullable=False)


class SubscriptionThrottle(Base):
    """The claim's memory of a limited subscription, written only under the claim lock."""

    __tablename__ = "subscription_throttles"
    __table_args__ = (
        Index(
            "ix_subscription_throttles_parked",
            "subscription_id",
            postgresql_where=text("parked"),
        ),
    )

    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    # Some of its deliveries are parked: every claim offers it its free room first, and the
    # ingest writes its new deliveries parked, behind them.
    parked: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # When the upkeep last lowered the flag: claims go on looking for parked deliveries for a
    # while after (see claim.LOWERED_WATCH).
    lowered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The rate limit's token bucket, as of refilled_at; NULL is a full bucket.
    tokens: Mapped[float | None] = mapped_column(Float, nullable=True)
    refilled_at: Mapped[datetime | None] = mapped_column(nullable=True)
