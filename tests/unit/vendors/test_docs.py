"""docs/events.md is the contract subscribers rely on: it must cover every vendor event and
every type, and its examples must be what the adapters produce."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from relay.events.taxonomy import EVENT_TYPES
from relay.vendors.registry import VENDORS
from tests.unit.vendors.examples import example_envelope

DOC = Path(__file__).resolve().parents[3] / "docs" / "events.md"
TABLE_ROW = re.compile(r"^\| (\w+) \| `([^`]+)`[^|]* \| `([^`]+)` \|$", re.MULTILINE)


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def example_in_doc(unified_type: str) -> object:
    sections = re.split(r"^### ", doc_text(), flags=re.MULTILINE)
    [section] = [s for s in sections if s.startswith(f"{unified_type}\n")]
    block = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert block is not None, f"no JSON example under ### {unified_type}"
    return json.loads(block.group(1))


def test_table_lists_every_vendor_event_with_its_type() -> None:
    documented = {
        (vendor, name): unified for vendor, name, unified in TABLE_ROW.findall(doc_text())
    }
    registered = {
        (vendor.name, name): unified
        for vendor in VENDORS.values()
        for name, unified in vendor.event_types.items()
    }

    assert documented == registered


@pytest.mark.parametrize("unified_type", list(EVENT_TYPES))
def test_every_type_has_a_true_example(unified_type: str) -> None:
    assert example_in_doc(unified_type) == example_envelope(unified_type)


@pytest.mark.parametrize("unified_type", list(EVENT_TYPES))
def test_every_example_has_its_own_type(unified_type: str) -> None:
    envelope = example_envelope(unified_type)

    assert envelope["type"] == unified_type


def test_constructed_fixtures_are_declared() -> None:
    text = doc_text()

    assert "RoutiGo fixtures are constructed; the vendor publishes no example." in text
    assert "AntsRoute fixtures are constructed; the vendor publishes no example." in text
