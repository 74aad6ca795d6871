"""A source as the ingest uses it."""

from __future__ import annotations

from dataclasses import dataclass

from relay.ingest.repository import SourceRow
from relay.sources.service import parsed_configuration
from relay.vendors.base import MappingOverrides
from relay.verification.schemes import SourceVerification


@dataclass(frozen=True, slots=True)
class IngestSource:
    """A source as the ingest uses it, credentials decrypted and mapping parsed."""

    id: str
    slug: str
    vendor: str
    active: bool
    rate_limit_per_second: float | None
    verification: SourceVerification
    overrides: MappingOverrides
    # The configuration's number when this was read (see ConfigVersion).
    config_version: int

    @classmethod
    def of(cls, row: SourceRow) -> IngestSource:
        verification, overrides = parsed_configuration(row.verification_token, row.mapping_json)
        return cls(
            id=row.id,
            slug=row.slug,
            vendor=row.vendor,
            active=row.active,
            rate_limit_per_second=row.rate_limit_per_second,
            verification=verification,
            overrides=overrides,
            config_version=row.config_version,
        )
