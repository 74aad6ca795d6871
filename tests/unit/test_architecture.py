"""The layout keeps its promises: no import cycle between the packages of src/relay, `core` and
`db` import no feature, and only the outbox writes deliveries, attempts and throttles."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "src" / "relay"
FOUNDATIONS = {"core", "db"}
OWNER = "outbox"


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "relay" and len(parts) > 1:
                found.add(parts[1])
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        package = _package(path)
        graph[package] |= _imported_packages(path) - {package}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph.get(node, ())):
            if (found := visit(target)) is not None:
                return found
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if (found := visit(node)) is not None:
            return found
    return None


def test_the_packages_import_each_other_without_a_cycle() -> None:
    graph = _graph()
    assert "outbox" in graph["dispatcher"]  # the graph is read, not empty
    assert _cycle(graph) is None


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_core_and_db_import_no_feature() -> None:
    graph = _graph()
    for foundation in FOUNDATIONS:
        assert graph[foundation] <= FOUNDATIONS, foundation


def test_the_outbox_imports_only_foundations() -> None:
    assert _graph()[OWNER] <= FOUNDATIONS


# Any way of writing one of the outbox's tables: SQL text, or SQLAlchemy's insert/update/delete
# of its models.
_WRITES = re.compile(
    r"(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(deliveries|delivery_attempts|subscription_throttles)\b"
    r"|\b(insert|update|delete)\((Delivery|DeliveryAttempt|SubscriptionThrottle)\)",
    re.IGNORECASE,
)
_HEALTH_COLUMNS = "state|state_reason|consecutive_failures|failing_since|breaker_open_until"
# A subscription's health columns written through the ORM (`subscription.state = ...`) or SQL.
_HEALTH_WRITES = re.compile(
    rf"\.({_HEALTH_COLUMNS})\s*=(?!=)"
    rf"|UPDATE\s+subscriptions\b[^;]*?\bSET\b[^;]*?\b({_HEALTH_COLUMNS})\s*=",
    re.IGNORECASE,
)


def _writers(pattern: re.Pattern[str]) -> set[str]:
    return {
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if pattern.search(path.read_text())
    }


def test_only_the_outbox_writes_deliveries_attempts_and_throttles() -> None:
    writers = _writers(_WRITES)
    assert writers, "the pattern matches nothing: it is broken"
    assert {path for path in writers if not path.startswith(f"{OWNER}/")} == set()


def test_only_the_outbox_writes_a_subscriptions_health() -> None:
    writers = _writers(_HEALTH_WRITES)
    assert "outbox/health.py" in writers, "the pattern matches nothing: it is broken"
    assert {path for path in writers if not path.startswith(f"{OWNER}/")} == set()
