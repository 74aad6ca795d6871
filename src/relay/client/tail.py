"""`relay tail`: new events and delivery attempts, one line each, as they happen."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
import typer
from rich.text import Text

from relay.client.http import RelayClient, Unreachable
from relay.client.options import DEFAULT, TokenOption, UrlOption, connect, one_line_errors
from relay.client.render import console

POLL_INTERVAL = 0.3
# Rows commit a little after their timestamp; each poll looks this far back and skips what it
# has already shown, so a late commit is still printed.
LOOKBACK = timedelta(seconds=10)
PAGE = 500
_FAR_FUTURE = "2999-01-01T00:00:00+00:00"
# While the relay is away (restarting, the network down): first retry soon, then back off so a
# long outage costs little, but never wait so long that its return goes unnoticed for minutes.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 10.0
_STYLES = {"event": "cyan", "succeeded": "green", "failed": "red"}


def _time(value: str) -> str:
    return datetime.fromisoformat(value).strftime("%H:%M:%S.%f")[:-3]


def event_line(event: dict[str, Any]) -> str:
    subject = f"{event['subject_kind']}:{event['subject_id'] or '-'}"
    return (
        f"{_time(event['received_at'])}  event     {event['type']:<24} {event['source']:<16} "
        f"{event['id']}  {subject}"
    )


def attempt_line(attempt: dict[str, Any]) -> str:
    status = attempt["response_status"] or attempt["error_class"] or "-"
    return (
        f"{_time(attempt['started_at'])}  {attempt['outcome']:<9} {attempt['event_type']:<24} "
        f"{attempt['source']:<16} {attempt['event_id']}  -> {attempt['subscription_id']} "
        f"#{attempt['attempt_number']} {status} {attempt['duration_ms']}ms"
    )


def styled(item: dict[str, Any]) -> Text:
    """The item's line with its kind or outcome coloured: green succeeded, red failed, yellow
    anything else an attempt can end as, cyan a new event."""
    if item["kind"] == "event":
        line, word = event_line(item), "event"
    else:
        line, word = attempt_line(item), item["outcome"]
    text = Text(line)
    start = line.index("  ") + 2  # after the time
    text.stylize(_STYLES.get(word, "yellow"), start, start + len(word))
    return text


class Tail:
    """Turns successive GET /v1/activity answers into the items not printed yet, in order."""

    def __init__(self, client: RelayClient, filters: dict[str, str | None]) -> None:
        self.client = client
        self.filters = filters
        self.start: datetime | None = None
        self.cursor: datetime | None = None
        self.seen: dict[str, datetime] = {}

    def poll(self) -> list[dict[str, Any]]:
        if self.start is None or self.cursor is None:
            # The relay's clock, not ours, says what "from now on" means.
            first = self.client.get("/v1/activity", since=_FAR_FUTURE, limit=1)
            self.start = self.cursor = datetime.fromisoformat(first["server_time"])
        answer = self.client.get(
            "/v1/activity",
            since=(self.cursor - LOOKBACK).isoformat(),
            limit=PAGE,
            **self.filters,
        )
        cursor = datetime.fromisoformat(answer["server_time"])
        fresh: list[dict[str, Any]] = []
        for kind, items, stamp in (
            ("event", answer["events"], "received_at"),
            ("attempt", answer["attempts"], "started_at"),
        ):
            for item in items:
                at = datetime.fromisoformat(item[stamp])
                if at >= self.start and item["id"] not in self.seen:
                    self.seen[item["id"]] = at
                    fresh.append({"kind": kind, "at": at, **item})
            if len(items) == PAGE:
                # A full page stops short of the newest rows: continue from its end next time.
                cursor = min(cursor, datetime.fromisoformat(items[-1][stamp]))
        self.cursor = cursor
        horizon = cursor - 2 * LOOKBACK
        self.seen = {key: at for key, at in self.seen.items() if at >= horizon}
        fresh.sort(key=lambda item: (item["at"], item["id"]))
        return fresh


def follow(
    client: RelayClient,
    filters: dict[str, str | None],
    emit: Callable[[dict[str, Any]], None],
    *,
    started: Callable[[], None] = lambda: None,
    say: Callable[[str], None] = lambda line: None,
    interval: float = POLL_INTERVAL,
) -> None:
    """Polls until interrupted. Once started, a relay that stops answering is waited for (with
    backoff) rather than fatal: the cursor is kept, so what happened meanwhile is shown after."""
    tail = Tail(client, filters)
    for item in tail.poll():
        emit(item)
    started()
    backoff: float | None = None
    while True:
        time.sleep(interval if backoff is None else backoff)
        try:
            fresh = tail.poll()
        except Unreachable as exc:
            if backoff is None:
                say(f"lost the relay: {exc}; reconnecting (Ctrl-C to stop)")
                backoff = BACKOFF_FIRST
            else:
                backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        if backoff is not None:
            say(f"reconnected to the relay at {client.url}")
            backoff = None
        for item in fresh:
            emit(item)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _announce(url: str) -> None:
    _stderr(f"following {url} (Ctrl-C to stop)")


@one_line_errors
def tail(
    event_type: Annotated[
        str | None, typer.Option("--type", help="Only events of this type.")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only this source (id or slug).")] = None,
    subscription: Annotated[
        str | None, typer.Option(help="Only its events and attempts (subscription id).")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Follow new events and delivery attempts live, one line each, until Ctrl-C. If the relay
    restarts or the connection drops, tail says so on stderr and reconnects."""
    terminal = console() if sys.stdout.isatty() and not as_json else None

    def emit(item: dict[str, Any]) -> None:
        if terminal is not None:
            terminal.print(styled(item), soft_wrap=True)
            return
        if as_json:
            line = orjson.dumps({key: value for key, value in item.items() if key != "at"}).decode()
        else:
            line = event_line(item) if item["kind"] == "event" else attempt_line(item)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    filters = {"type": event_type, "source": source, "subscription_id": subscription}
    with connect(url, token) as client:
        try:
            follow(client, filters, emit, started=lambda: _announce(client.url), say=_stderr)
        except KeyboardInterrupt:
            return
