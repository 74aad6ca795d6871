from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relay.db.base import Base, utcnow


class Event(Base):
    """A normalized event. `envelope` holds the exact JSON text subscribers receive and sign."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_received_at_id", "received_at", "id"),
        Index("ix_events_type_received_at", "type", "received_at"),
        Index("ix_events_source_id_received_at", "source_id", "received_at"),
        Index("ix_events_subject_id_id", "subject_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    source_id: Mapped[str] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), nullable=False
    )
    request_id: Mapped[str | None] = mapped_column(
        ForeignKey("inbound_requests.id", ondelete="SET NULL"), nullable=True, index=True
    )
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    vendor: Mapped[str] = mapped_column(String(32), nullable=False)
    vendor_event_name: Mapped[str] = mapped_column(String(200), nullable=False)
    vendor_event_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    subject_kind: Mapped[str] = mapped_column(String(32), nullable=False)
    subject_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(nullable=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False)
    envelope: Mapped[str] = mapped_column(Text, nullable=False)


class DedupeKey(Base):
    """Durable dedupe: kept apart from events so it can outlive them (a vendor's late retry)."""

    __tablename__ = "dedupe_keys"

    source_id: Mapped[str] = mapped_column(
        ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), nullable=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, nullable=False, index=True)
