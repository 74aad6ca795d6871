from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from relay.core.crypto import decrypt_json
from relay.core.errors import Conflict, Invalid, NotFound
from relay.core.ids import new_id
from relay.sources.models import Source
from relay.sources.repository import SourceRepository
from relay.sources.schemas import SLUG_PATTERN, MappingConfig, SourceCreate, SourceOut, SourceUpdate
from relay.vendors.base import MappingOverrides
from relay.vendors.registry import VENDORS
from relay.verification.schemes import SourceVerification, parse_verification

_SLUG = re.compile(SLUG_PATTERN)


def ingest_path(slug: str) -> str:
    return f"/ingest/{slug}"


def verification_of(source: Source) -> SourceVerification:
    return SourceVerification.model_validate(source.verification)


@lru_cache(maxsize=1024)
def parsed_configuration(
    verification_token: str, mapping_json: str
) -> tuple[SourceVerification, MappingOverrides]:
    """A source's stored verification (still encrypted) and mapping, decrypted and parsed.

    The ingest reads these two columns on every webhook; keyed by their stored text, the work
    is done once per version of a source, and an edited source is a new key, never stale.
    """
    verification = SourceVerification.model_validate(decrypt_json(verification_token))
    return verification, _overrides(MappingConfig.model_validate_json(mapping_json))


def _overrides(mapping: MappingConfig) -> MappingOverrides:
    return MappingOverrides(
        event_name_pointer=mapping.event_name_pointer,
        event_id_pointer=mapping.event_id_pointer,
        entity_id_pointer=mapping.entity_id_pointer,
        event_time_pointer=mapping.event_time_pointer,
        type_map=dict(mapping.type_map),
    )


def to_out(source: Source) -> SourceOut:
    verification = verification_of(source)
    return SourceOut(
        id=source.id,
        slug=source.slug,
        vendor=source.vendor,
        ingest_path=ingest_path(source.slug),
        active=source.active,
        description=source.description,
        verification=verification.masked(),
        verified=verification.current.type != "none",
        mapping=MappingConfig.model_validate(source.mapping),
        rate_limit_per_second=source.rate_limit_per_second,
        created_at=source.created_at,
        updated_at=source.updated_at,
    )


def _check_vendor(vendor: str) -> None:
    if vendor not in VENDORS:
        known = ", ".join(sorted(VENDORS))
        raise Invalid(f"unknown vendor '{vendor}': use one of {known}")


def _check_slug(slug: str) -> None:
    if not _SLUG.match(slug):
        raise Invalid(
            f"slug '{slug}' is not valid: use 1-64 lower-case letters, digits and dashes, "
            "starting and ending with a letter or digit (e.g. bringg-eu)"
        )


def _parse_verification(vendor: str, raw: dict[str, Any]) -> SourceVerification:
    try:
        return parse_verification(raw, vendor_default_type=VENDORS[vendor].default_verification)
    except (ValidationError, ValueError) as exc:
        raise Invalid(f"verification is not valid: {validation_message(exc)}") from exc


def validation_message(exc: ValidationError | ValueError) -> str:
    """Every problem of a validation, each with the field it is in, on one line."""
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors(include_url=False, include_input=False):
            location = ".".join(str(part) for part in error["loc"])
            parts.append(f"{location}: {error['msg']}" if location else error["msg"])
        return "; ".join(parts)
    return str(exc)


class SourceService:
    def __init__(self, repository: SourceRepository) -> None:
        self.repository = repository

    async def create(self, payload: SourceCreate) -> Source:
        _check_slug(payload.slug)
        _check_vendor(payload.vendor)
        verification = _parse_verification(payload.vendor, payload.verification)
        if await self.repository.get_by_slug(payload.slug) is not None:
            raise Conflict(f"slug '{payload.slug}' is taken: choose another slug")
        source = Source(
            id=new_id("src"),
            slug=payload.slug,
            vendor=payload.vendor,
            description=payload.description,
            active=payload.active,
            verification=verification.to_storage(),
            mapping=payload.mapping.model_dump(),
            rate_limit_per_second=payload.rate_limit_per_second,
        )
        try:
            await self.repository.add(source)
        except IntegrityError as exc:
            raise Conflict(f"slug '{payload.slug}' is taken: choose another slug") from exc
        return source

    async def find(self, id_or_slug: str) -> Source | None:
        """A source named by its id or its slug, the two names people have for it."""
        return await self.repository.get(id_or_slug) or await self.repository.get_by_slug(
            id_or_slug
        )

    async def get(self, source_id: str) -> Source:
        source = await self.find(source_id)
        if source is None:
            raise NotFound(f"no source with id or slug '{source_id}'")
        return source

    async def resolve_filter(self, field: str, id_or_slug: str | None) -> str | None:
        """The id of a source given as a filter; a name that is no source is a 422, not an
        empty answer that looks like "nothing happened"."""
        if id_or_slug is None:
            return None
        source = await self.find(id_or_slug)
        if source is None:
            raise Invalid(f"{field}: no source with id or slug '{id_or_slug}'")
        return source.id

    async def list(self, *, limit: int, cursor: str | None) -> Sequence[Source]:
        return await self.repository.list(limit=limit, cursor=cursor)

    async def update(self, source_id: str, payload: SourceUpdate, *, now: datetime) -> Source:
        source = await self.get(source_id)
        if payload.verification is not None:
            new = _parse_verification(source.vendor, payload.verification)
            keep_for = timedelta(seconds=payload.keep_previous_for_seconds)
            rotated = verification_of(source).rotated_to(
                new.current, previous_expires_at=now + keep_for if keep_for else None
            )
            source.verification = rotated.to_storage()
        if payload.description is not None:
            source.description = payload.description
        if payload.active is not None:
            source.active = payload.active
        if payload.mapping is not None:
            source.mapping = payload.mapping.model_dump()
        if "rate_limit_per_second" in payload.model_fields_set:
            source.rate_limit_per_second = payload.rate_limit_per_second
        await self.repository.session.flush()
        return source

    async def delete(self, source_id: str) -> None:
        await self.repository.delete(await self.get(source_id))
