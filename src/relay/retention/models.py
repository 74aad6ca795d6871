"""Indexes the retention purge needs on tables other features own."""

from __future__ import annotations

from sqlalchemy import Index, text

from relay.outbox.models import DeliveryAttempt

# Clearing old response bodies reads only attempts that still have one, oldest first.
ATTEMPT_BODIES_INDEX = Index(
    "ix_delivery_attempts_started_at_body",
    DeliveryAttempt.started_at,
    postgresql_where=text("response_body IS NOT NULL"),
)
