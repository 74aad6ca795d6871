"""Background jobs (recover, bulk replay): durable rows any dispatcher process may run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from relay.db.base import Base, utcnow
from relay.outbox.models import Delivery


class JobKind:
    RECOVER = "recover"
    REPLAY = "replay"


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Job(Base):
    """One recover or replay job. `cursor` is the keyset position of the last finished batch,
    written in that batch's transaction, so a job resumes exactly where it stopped."""

    __tablename__ = "jobs"
    __table_args__ = (
        # The runner's claim reads only unfinished jobs: a handful, however long the history.
        Index(
            "ix_jobs_unfinished",
            "created_at",
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    done: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    runs: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    locked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


# Recovery walks one subscription's failed deliveries in (created_at, id) order; the index
# holds failed rows only, so its size follows the failures, not the delivery history. It is
# declared here, with its only user, and attached to the deliveries table.
FAILED_DELIVERIES_INDEX = Index(
    "ix_deliveries_failed_subscription",
    Delivery.subscription_id,
    Delivery.created_at,
    Delivery.id,
    postgresql_where=text("status = 'failed'"),
)
