from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Float, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from relay.core.crypto import EncryptedJSON
from relay.db.base import Base, TimestampMixin


class Source(TimestampMixin, Base):
    """One vendor account posting webhooks to /ingest/{slug}."""

    __tablename__ = "sources"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    vendor: Mapped[str] = mapped_column(String(32), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    # Encrypted whole: every scheme's credentials sit somewhere in it.
    verification: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON, nullable=False)
    mapping: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    rate_limit_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
