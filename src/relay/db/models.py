"""Imports every model so that `metadata` is complete for Alembic and the schema test."""

from relay.db.base import Base
from relay.deliveries.models import Delivery, DeliveryAttempt
from relay.events.models import DedupeKey, Event
from relay.ingest.models import RequestLog
from relay.sources.models import Source
from relay.subscriptions.models import Subscription

metadata = Base.metadata

__all__ = [
    "DedupeKey",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "RequestLog",
    "Source",
    "Subscription",
    "metadata",
]
