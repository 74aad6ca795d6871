"""Imports every model so that `metadata` is complete for Alembic and the schema test."""

from relay.apikeys.models import ApiKey
from relay.db.base import Base
from relay.events.models import DedupeKey, Event
from relay.ingest.models import ConfigVersion, RequestLog
from relay.jobs.models import FAILED_DELIVERIES_INDEX, Job
from relay.outbox.models import Delivery, DeliveryAttempt, SubscriptionThrottle
from relay.retention.models import ATTEMPT_BODIES_INDEX
from relay.sources.models import Source
from relay.subscriptions.models import Subscription

metadata = Base.metadata

__all__ = [
    "ATTEMPT_BODIES_INDEX",
    "FAILED_DELIVERIES_INDEX",
    "ApiKey",
    "ConfigVersion",
    "DedupeKey",
    "Delivery",
    "DeliveryAttempt",
    "Event",
    "Job",
    "RequestLog",
    "Source",
    "Subscription",
    "SubscriptionThrottle",
    "metadata",
]
