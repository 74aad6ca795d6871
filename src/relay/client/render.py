"""Output: rich tables for people, JSON with --json for scripts."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

# The relay's ids: a prefix and a ULID. A wrapped id cannot be copied, so their columns never wrap.
_ID = re.compile(r"^[a-z]{2,4}_[0-9A-Z]{26}$")

# Off a terminal rich would wrap at 80 columns and cut ids; let lines be as long as they are.
_PIPE_WIDTH = 500


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else _PIPE_WIDTH
    return Console(file=stream, width=width, stderr=stderr, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def count(value: int) -> str:
    return f"{value:,}"


def _rounded(amount: float, unit: str) -> str:
    # Two significant digits are what a person compares; more is noise from the clocks.
    return f"{amount:.1f} {unit}" if amount < 10 else f"{amount:.0f} {unit}"


def milliseconds(value: float | None) -> str:
    """A duration as a person reads it: `12 ms`, `1.4 s`, `6.6 min`, `2.1 h`."""
    if value is None:
        return "-"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return _rounded(value / 1000, "s")
    if value < 3_600_000:
        return _rounded(value / 60_000, "min")
    return _rounded(value / 3_600_000, "h")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value) or "-"
    if isinstance(value, dict):
        return orjson.dumps(value).decode() if value else "-"
    return str(value)


def table(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]],
    *,
    title: str | None = None,
) -> Table:
    result = Table(title=title, title_justify="left", header_style="bold")
    cells = [[cell(get(row)) for _, get in columns] for row in rows]
    for index, (name, _) in enumerate(columns):
        values = [line[index] for line in cells]
        # A short word beside the ids (`-`, `all`) does not make the column wrappable.
        if any(_ID.match(value) for value in values) and all(
            _ID.match(value) or (" " not in value and len(value) <= 8) for value in values
        ):
            widest = max(len(name), *(len(value) for value in values))
            result.add_column(name, no_wrap=True, min_width=widest)
        else:
            # A header split over lines reads as two columns; the values fold instead.
            result.add_column(name, overflow="fold", min_width=len(name))
    for line in cells:
        result.add_row(*line)
    return result


def details(item: dict[str, Any], *, title: str | None = None) -> Table:
    """One object as a two-column table of its fields."""
    result = Table(title=title, title_justify="left", show_header=False, box=None)
    result.add_column(style="bold")
    result.add_column(overflow="fold")
    for key, value in item.items():
        result.add_row(key, cell(value))
    return result


def page_hint(page: dict[str, Any]) -> None:
    if page.get("next_cursor"):
        console(stderr=True).print(f"more: --cursor {page['next_cursor']}")


def show(data: Any, as_json: bool, render: Callable[[], Any]) -> None:
    if as_json:
        print_json(data)
    else:
        console().print(render())


def show_page(
    page: dict[str, Any],
    as_json: bool,
    columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]],
) -> None:
    """A list answer: its JSON, or a table of its items and how to get the next page."""
    show(page, as_json, lambda: table(page["data"], columns))
    if not as_json:
        page_hint(page)
