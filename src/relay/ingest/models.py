from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from relay.db.base import Base, utcnow

# What the request log keeps of a request's wrapping. A value longer than its column is cut to
# fit, ending in TRUNCATED: a vendor does not retry a 4xx, so a webhook is never refused for
# metadata the log cannot hold. The headers column is JSONB, with no size of its own; these
# bound what one request puts in it.
CONTENT_TYPE_LENGTH = 200
REMOTE_ADDR_LENGTH = 64
HEADER_NAME_LENGTH = 200
HEADER_VALUE_LENGTH = 4096
HEADER_COUNT = 100
TRUNCATED = "…[truncated]"


class RequestLog(Base):
    """Every request that reached /ingest, whatever became of it: the ops' audit trail."""

    __tablename__ = "inbound_requests"
    __table_args__ = (
        Index("ix_inbound_requests_received_at_id", "received_at", "id"),
        Index("ix_inbound_requests_source_id_received_at", "source_id", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source_id: Mapped[str | None] = mapped_column(
        ForeignKey("sources.id", ondelete="SET NULL"), nullable=True
    )
    slug: Mapped[str] = mapped_column(String(200), nullable=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    verdict: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    body_size: Mapped[int] = mapped_column(Integer, nullable=False)
    content_type: Mapped[str | None] = mapped_column(String(CONTENT_TYPE_LENGTH), nullable=True)
    remote_addr: Mapped[str | None] = mapped_column(String(REMOTE_ADDR_LENGTH), nullable=True)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    accepted_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    duplicate_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    event_ids: Mapped[list[str]] = mapped_column(
        ARRAY(String(40)), nullable=False, server_default="{}"
    )


class ConfigVersion(Base):
    """One row whose number goes up whenever what the ingest reads of sources and
    subscriptions changes (triggers of migration 0009). The ingest keeps that configuration
    in memory, and writes a webhook only if the number it was read at is still current (see
    directory.py). Should the row be missing, both sides read it as 0."""

    __tablename__ = "config_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False)
