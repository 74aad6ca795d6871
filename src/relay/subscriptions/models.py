from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Float, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from relay.core.crypto import EncryptedJSON, EncryptedText
from relay.db.base import Base, TimestampMixin
from relay.outbox.states import Liveness, SubscriptionState, liveness

SUBSCRIPTION_INVARIANTS = {
    "state": f"state IN ({', '.join(repr(value.value) for value in SubscriptionState)})",
    "max_concurrency": "max_concurrency >= 1",
    "rate_limit": "rate_limit_per_second IS NULL OR rate_limit_per_second > 0",
    "failures_counted": "consecutive_failures >= 0",
}


class Subscription(TimestampMixin, Base):
    """A subscriber URL and which events it wants. Deleting one only marks it deleted, so
    its deliveries and attempts stay readable."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        *(CheckConstraint(rule, name=name) for name, rule in SUBSCRIPTION_INVARIANTS.items()),
        Index(
            "ix_subscriptions_live",
            "id",
            postgresql_where=text("deleted_at IS NULL AND active"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    vendors: Mapped[list[str] | None] = mapped_column(ARRAY(Text), nullable=True)
    source_ids: Mapped[list[str] | None] = mapped_column(ARRAY(Text), nullable=True)
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    # Subscribers put credentials in them under any name: encrypted like the signing secret.
    headers: Mapped[dict[str, str]] = mapped_column(EncryptedJSON, nullable=False)
    ordered: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    max_concurrency: Mapped[int] = mapped_column(Integer, nullable=False, server_default="10")
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    retry_schedule: Mapped[list[float] | None] = mapped_column(ARRAY(Float), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    state: Mapped[str] = mapped_column(String(16), nullable=False, server_default="active")
    state_reason: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    secret: Mapped[str] = mapped_column(EncryptedText, nullable=False)
    previous_secret: Mapped[str | None] = mapped_column(EncryptedText, nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(nullable=True)
    breaker_open_until: Mapped[datetime | None] = mapped_column(nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)

    @property
    def liveness(self) -> Liveness:
        return liveness(deleted_at=self.deleted_at, state=self.state, active=self.active)
