"""`relay sources|subscriptions|events|deliveries|recover|stats`: the REST API from a terminal."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.json import JSON

from relay.client.http import ApiError, RelayClient, parse_moment
from relay.client.jobs import wait_for_job
from relay.client.options import (
    DEFAULT,
    CursorOption,
    JsonOption,
    LimitOption,
    TokenOption,
    UrlOption,
    connect,
    fail,
    one_line_errors,
)
from relay.client.render import (
    console,
    count,
    details,
    milliseconds,
    print_json,
    show,
    show_page,
    table,
)

sources = typer.Typer(help="Sources: where vendors post webhooks.", no_args_is_help=True)
subscriptions = typer.Typer(help="Subscriptions: where events go.", no_args_is_help=True)
events = typer.Typer(help="Events the relay received, and replaying them.", no_args_is_help=True)
deliveries = typer.Typer(help="Deliveries of events to subscriptions.", no_args_is_help=True)
requests = typer.Typer(
    help="Inbound requests vendors sent, with the verdict on each (why a 401).",
    no_args_is_help=True,
)
jobs = typer.Typer(help="Background recover and replay jobs.", no_args_is_help=True)

SourceArgument = Annotated[str, typer.Argument(help="Source id or slug.")]
SourcesOption = Annotated[
    list[str] | None, typer.Option("--source", help="Only these sources (id or slug).")
]
SubscriptionArgument = Annotated[str, typer.Argument(help="Subscription id.")]


def _json_object(option: str, value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ApiError(f'{option} must be a JSON object, e.g. \'{{"type": "hmac"}}\'') from None
    if not isinstance(parsed, dict):
        raise ApiError(f'{option} must be a JSON object, e.g. \'{{"type": "hmac"}}\'')
    return parsed


def _moment(value: str | None) -> str | None:
    return None if value is None else parse_moment(value)


# Sources

_SOURCE_COLUMNS = (
    ("ID", lambda s: s["id"]),
    ("SLUG", lambda s: s["slug"]),
    ("VENDOR", lambda s: s["vendor"]),
    ("ACTIVE", lambda s: s["active"]),
    ("VERIFICATION", lambda s: (s["verification"].get("current") or {}).get("type")),
    ("INGEST PATH", lambda s: s["ingest_path"]),
)


@sources.command("list")
@one_line_errors
def sources_list(
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """List sources, newest first."""
    with connect(url, token) as client:
        page = client.get("/v1/sources", limit=limit, cursor=cursor)
    show_page(page, as_json, _SOURCE_COLUMNS)


@sources.command("create")
@one_line_errors
def sources_create(
    slug: Annotated[str, typer.Option(help="URL-safe name: vendors post to /ingest/SLUG.")],
    vendor: Annotated[str, typer.Option(help="routigo, antsroute, bringg or routestripe.")],
    verification: Annotated[
        str | None,
        typer.Option(help='JSON, e.g. \'{"type": "hmac", "secret": "..."}\'; vendor default.'),
    ] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it switched off.")] = False,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a source."""
    body: dict[str, Any] = {
        "slug": slug,
        "vendor": vendor,
        "description": description,
        "active": not inactive,
    }
    parsed = _json_object("--verification", verification)
    if parsed is not None:
        body["verification"] = parsed
    with connect(url, token) as client:
        source = client.post("/v1/sources", body)
    show(source, as_json, lambda: details(source, title="source created"))


@sources.command("show")
@one_line_errors
def sources_show(
    source_id: SourceArgument,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one source."""
    with connect(url, token) as client:
        source = client.get(f"/v1/sources/{source_id}")
    show(source, as_json, lambda: details(source))


@sources.command("delete")
@one_line_errors
def sources_delete(
    source_id: SourceArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a source, with its events and their deliveries."""
    if not yes and not typer.confirm(f"delete source {source_id} and all its events?"):
        raise fail("not deleted")
    with connect(url, token) as client:
        client.delete(f"/v1/sources/{source_id}")
    show({"deleted": source_id}, as_json, lambda: f"deleted source {source_id}")


@sources.command("update")
@one_line_errors
def sources_update(
    source_id: SourceArgument,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    active: Annotated[
        bool | None, typer.Option("--active/--inactive", help="Switch it on or off.")
    ] = None,
    mapping: Annotated[
        str | None, typer.Option(help="JSON mapping overrides, e.g. '{\"type_map\": {}}'.")
    ] = None,
    rate_limit: Annotated[
        float | None, typer.Option(help="Most webhooks a second (0 for no limit).")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a source's description, state, mapping or rate limit (credentials: rotate)."""
    body: dict[str, Any] = {}
    if description is not None:
        body["description"] = description
    if active is not None:
        body["active"] = active
    if mapping is not None:
        body["mapping"] = _json_object("--mapping", mapping)
    if rate_limit is not None:
        body["rate_limit_per_second"] = rate_limit or None
    if not body:
        raise ApiError("nothing to change: give --description, --active/--inactive, ...")
    with connect(url, token) as client:
        source = client.patch(f"/v1/sources/{source_id}", body)
    show(source, as_json, lambda: details(source, title="source updated"))


@sources.command("rotate")
@one_line_errors
def sources_rotate(
    source_id: SourceArgument,
    verification: Annotated[
        str, typer.Option(help='The new credentials as JSON, e.g. \'{"type": "hmac", ...}\'.')
    ],
    keep_previous: Annotated[
        int, typer.Option(help="Seconds the old credentials are still accepted.")
    ] = 0,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace a source's credentials, accepting the old ones a while longer if asked."""
    body = {
        "verification": _json_object("--verification", verification),
        "keep_previous_for_seconds": keep_previous,
    }
    with connect(url, token) as client:
        source = client.patch(f"/v1/sources/{source_id}", body)
    show(source, as_json, lambda: details(source, title="credentials rotated"))


@sources.command("test")
@one_line_errors
def sources_test(
    source_id: SourceArgument,
    body: Annotated[
        typer.FileText | None,
        typer.Option(
            "--body",
            help="A file (or - for stdin) holding the webhook to send, as the vendor sends it. "
            "Without it: a new order in the vendor's format.",
        ),
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Have the relay send the source a webhook signed with its own credentials, through the
    real ingest (verified, stored, delivered, in the request log); exits 1 when the relay would
    have refused it."""
    request: dict[str, Any] = {}
    if body is not None:
        try:
            request["body"] = orjson.loads(body.read())
        except orjson.JSONDecodeError:
            raise ApiError(f"--body: {body.name} does not hold JSON") from None
    with connect(url, token) as client:
        result = client.post(f"/v1/sources/{source_id}/test", request)
    show(result, as_json, lambda: details(result, title="test webhook"))
    if result["status_code"] != 200:
        raise fail(f"the relay would answer the vendor {result['status_code']}: {result['reason']}")


# Subscriptions


def _headers(items: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in items:
        name, separator, value = item.partition(":")
        if not separator or not name.strip():
            raise ApiError(f"--header '{item}' must look like NAME:VALUE")
        headers[name.strip()] = value.strip()
    return headers


def _retry_schedule(value: str) -> list[float]:
    try:
        return [float(part) for part in value.split(",") if part]
    except ValueError:
        raise ApiError("--retry-schedule must be seconds separated by commas") from None


_SUBSCRIPTION_COLUMNS = (
    ("ID", lambda s: s["id"]),
    ("URL", lambda s: s["url"]),
    ("EVENT TYPES", lambda s: s["event_types"]),
    ("STATE", lambda s: s["liveness"]),
    ("FAILURES", lambda s: s["consecutive_failures"]),
)


@subscriptions.command("list")
@one_line_errors
def subscriptions_list(
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """List subscriptions, newest first."""
    with connect(url, token) as client:
        page = client.get("/v1/subscriptions", limit=limit, cursor=cursor)
    show_page(page, as_json, _SUBSCRIPTION_COLUMNS)


@subscriptions.command("create")
@one_line_errors
def subscriptions_create(
    target: Annotated[str, typer.Argument(help="Subscriber URL (http or https).")],
    event_type: Annotated[
        list[str] | None,
        typer.Option("--type", help="Event type or prefix wildcard (route.*); repeatable."),
    ] = None,
    vendor: Annotated[list[str] | None, typer.Option(help="Only these vendors.")] = None,
    source: SourcesOption = None,
    filter_: Annotated[
        str | None, typer.Option("--filter", help='JSON filter, e.g. \'{"data.status": "x"}\'.')
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option(help="Extra header NAME:VALUE; repeatable.")
    ] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    ordered: Annotated[bool, typer.Option(help="Deliver each subject in order.")] = False,
    retry_schedule: Annotated[
        str | None, typer.Option(help="Seconds before each retry, comma-separated: 5,60,600.")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a subscription; its signing secret is shown this once."""
    body: dict[str, Any] = {
        "url": target,
        "event_types": event_type or ["*"],
        "description": description,
        "ordered": ordered,
    }
    if vendor:
        body["vendors"] = vendor
    if source:
        body["source_ids"] = source
    body["filter"] = _json_object("--filter", filter_)
    body["headers"] = _headers(header or [])
    if retry_schedule is not None:
        body["retry_schedule"] = _retry_schedule(retry_schedule)
    with connect(url, token) as client:
        subscription = client.post("/v1/subscriptions", body)
    show(subscription, as_json, lambda: details(subscription, title="subscription created"))
    if not as_json:
        console(stderr=True).print("the secret is shown only now: store it with the subscriber")


@subscriptions.command("show")
@one_line_errors
def subscriptions_show(
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one subscription."""
    with connect(url, token) as client:
        subscription = client.get(f"/v1/subscriptions/{subscription_id}")
    show(subscription, as_json, lambda: details(subscription))


@subscriptions.command("rotate-secret")
@one_line_errors
def subscriptions_rotate_secret(
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """New signing secret; the old one keeps signing too until the overlap ends."""
    with connect(url, token) as client:
        rotated = client.post(f"/v1/subscriptions/{subscription_id}/rotate-secret")
    show(rotated, as_json, lambda: details(rotated, title="secret rotated"))


@subscriptions.command("test")
@one_line_errors
def subscriptions_test(
    subscription_id: Annotated[str, typer.Argument(help="Subscription id.")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a signed test event now; exits 1 when the subscriber did not answer 2xx."""
    with connect(url, token) as client:
        result = client.post(f"/v1/subscriptions/{subscription_id}/test")
    show(result, as_json, lambda: details(result, title="test delivery"))
    if not result["succeeded"]:
        reason = result.get("error") or f"subscriber answered {result.get('status_code')}"
        raise fail(f"test delivery failed: {reason}")


def _set_subscription(
    subscription_id: str,
    body: dict[str, Any],
    *,
    url: str | None,
    token: str | None,
    as_json: bool,
    title: str,
) -> None:
    with connect(url, token) as client:
        subscription = client.patch(f"/v1/subscriptions/{subscription_id}", body)
    show(subscription, as_json, lambda: details(subscription, title=title))


@subscriptions.command("update")
@one_line_errors
def subscriptions_update(
    subscription_id: SubscriptionArgument,
    target: Annotated[str | None, typer.Option("--target", help="New subscriber URL.")] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", help="Event types (replace); repeatable.")
    ] = None,
    vendor: Annotated[list[str] | None, typer.Option(help="Only these vendors.")] = None,
    source: SourcesOption = None,
    filter_: Annotated[str | None, typer.Option("--filter", help="JSON filter.")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="Requests in flight.")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="Most deliveries a second.")] = None,
    header: Annotated[
        list[str] | None,
        typer.Option(help="Extra header NAME:VALUE; repeatable; replaces them all."),
    ] = None,
    no_headers: Annotated[bool, typer.Option("--no-headers", help="Drop every header.")] = False,
    ordered: Annotated[
        bool | None, typer.Option("--ordered/--no-ordered", help="Deliver each subject in order.")
    ] = None,
    retry_schedule: Annotated[
        str | None, typer.Option(help="Seconds before each retry, comma-separated: 5,60,600.")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a subscription; only the options given change."""
    if header and no_headers:
        raise ApiError("give --header or --no-headers, not both")
    body: dict[str, Any] = {
        "url": target,
        "event_types": event_type,
        "vendors": vendor,
        "source_ids": source,
        "filter": _json_object("--filter", filter_),
        "description": description,
        "max_concurrency": max_concurrency,
        "rate_limit_per_second": rate_limit,
        "headers": {} if no_headers else _headers(header) if header else None,
        "ordered": ordered,
        "retry_schedule": None if retry_schedule is None else _retry_schedule(retry_schedule),
    }
    body = {key: value for key, value in body.items() if value is not None}
    if not body:
        raise ApiError("nothing to change: give --target, --type, --filter, ...")
    _set_subscription(
        subscription_id, body, url=url, token=token, as_json=as_json, title="subscription updated"
    )


@subscriptions.command("pause")
@one_line_errors
def subscriptions_pause(
    subscription_id: SubscriptionArgument,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop delivering to it; its deliveries wait, and go out on resume."""
    _set_subscription(
        subscription_id, {"active": False}, url=url, token=token, as_json=as_json, title="paused"
    )


@subscriptions.command("resume")
@one_line_errors
def subscriptions_resume(
    subscription_id: SubscriptionArgument,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deliver to it again (also re-enables one the relay disabled)."""
    _set_subscription(
        subscription_id, {"active": True}, url=url, token=token, as_json=as_json, title="resumed"
    )


@subscriptions.command("delete")
@one_line_errors
def subscriptions_delete(
    subscription_id: SubscriptionArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to confirm.")] = False,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a subscription; nothing more is delivered to it."""
    if not yes and not typer.confirm(f"delete subscription {subscription_id}?"):
        raise fail("not deleted")
    with connect(url, token) as client:
        client.delete(f"/v1/subscriptions/{subscription_id}")
    show(
        {"deleted": subscription_id},
        as_json,
        lambda: f"deleted subscription {subscription_id}",
    )


@subscriptions.command("attempts")
@one_line_errors
def subscriptions_attempts(
    subscription_id: SubscriptionArgument,
    errors_only: Annotated[
        bool, typer.Option("--errors", help="Only attempts that did not succeed.")
    ] = False,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """Delivery attempts made to a subscription, newest first."""
    with connect(url, token) as client:
        page = client.get(
            f"/v1/subscriptions/{subscription_id}/attempts",
            errors_only=errors_only or None,
            limit=limit,
            cursor=cursor,
        )
    show_page(page, as_json, _ATTEMPT_COLUMNS)


# Events

_EVENT_COLUMNS = (
    ("ID", lambda e: e["id"]),
    ("TYPE", lambda e: e["type"]),
    ("SOURCE", lambda e: e["source"].get("slug")),
    ("SUBJECT", lambda e: f"{e['subject'].get('kind')} {e['subject'].get('id') or ''}".strip()),
    ("RECEIVED", lambda e: e["received_at"]),
)

SinceOption = Annotated[
    str | None, typer.Option(help="From this time: ISO 8601 or back from now (30m, 2h, 1d).")
]
UntilOption = Annotated[str | None, typer.Option(help="Before this time (same forms).")]


@events.command("list")
@one_line_errors
def events_list(
    event_type: Annotated[str | None, typer.Option("--type", help="Unified event type.")] = None,
    vendor: Annotated[str | None, typer.Option(help="Vendor name.")] = None,
    source: Annotated[str | None, typer.Option(help="Source id or slug.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """List events, newest first."""
    with connect(url, token) as client:
        page = client.get(
            "/v1/events",
            type=event_type,
            vendor=vendor,
            source=source,
            since=_moment(since),
            until=_moment(until),
            limit=limit,
            cursor=cursor,
        )
    show_page(page, as_json, _EVENT_COLUMNS)


@events.command("show")
@one_line_errors
def events_show(
    event_id: Annotated[str, typer.Argument(help="Event id.")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one event's envelope, as subscribers receive it."""
    with connect(url, token) as client:
        event = client.get(f"/v1/events/{event_id}")
    show(event, as_json, lambda: JSON.from_data(event))


@events.command("replay")
@one_line_errors
def events_replay(
    event_id: Annotated[
        str | None, typer.Argument(help="One event to replay; omit to replay by filter.")
    ] = None,
    subscription: Annotated[
        list[str] | None, typer.Option(help="Only to these subscription ids; repeatable.")
    ] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="Unified event type.")] = None,
    vendor: Annotated[str | None, typer.Option(help="Vendor name.")] = None,
    source: Annotated[str | None, typer.Option(help="Source id or slug.")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    wait: Annotated[bool, typer.Option(help="Follow the bulk job until it ends.")] = True,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deliver events again: one by id at once, or every event matching a filter as a job."""
    with connect(url, token) as client:
        if event_id is not None:
            if any(value is not None for value in (event_type, vendor, source, since, until)):
                raise ApiError("give an event id or filters (--type, --since ...), not both")
            body = {"subscription_ids": subscription} if subscription else None
            replayed = client.post(f"/v1/events/{event_id}/replay", body)
            show(
                replayed,
                as_json,
                lambda: table(
                    replayed["deliveries"],
                    _DELIVERY_COLUMNS,
                    title=f"{len(replayed['delivery_ids'])} new deliveries of {event_id}",
                ),
            )
            return
        if since is None:
            raise ApiError("bulk replay needs --since (and optionally --until, --type, ...)")
        job = client.post(
            "/v1/events/replay",
            {
                "since": parse_moment(since),
                "until": _moment(until),
                "type": event_type,
                "vendor": vendor,
                "source": source,
                "subscription_ids": subscription,
            },
        )
        _follow(client, job, wait=wait, as_json=as_json)


def _follow(client: RelayClient, job: dict[str, Any], *, wait: bool, as_json: bool) -> None:
    if wait:
        job = wait_for_job(client, job["id"], show_progress=not as_json)
    show(job, as_json, lambda: details(_job_summary(job), title=f"job {job['id']}"))


def _job_summary(job: dict[str, Any]) -> dict[str, Any]:
    keys = ("kind", "status", "done", "total", "result", "error", "created_at", "finished_at")
    return {key: job.get(key) for key in keys}


_EVENT_TYPE_COLUMNS = (("TYPE", lambda t: t["type"]), ("MEANING", lambda t: t["description"]))


@one_line_errors
def event_types(
    url: UrlOption = DEFAULT, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """The unified event types subscriptions can ask for."""
    with connect(url, token) as client:
        types = client.get("/v1/event-types")
    show(types, as_json, lambda: table(types, _EVENT_TYPE_COLUMNS))


# Inbound requests

_REQUEST_COLUMNS = (
    ("ID", lambda r: r["id"]),
    ("RECEIVED", lambda r: r["received_at"]),
    ("SOURCE", lambda r: r["slug"]),
    ("VERDICT", lambda r: r["verdict"]),
    ("STATUS", lambda r: r["status_code"]),
    ("REASON", lambda r: r["reason"]),
)


@requests.command("list")
@one_line_errors
def requests_list(
    source: Annotated[str | None, typer.Option(help="Source id or slug.")] = None,
    verdict: Annotated[
        str | None, typer.Option(help="accepted, duplicate, ping, rejected or invalid.")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """Requests vendors sent, newest first, with the verdict on each."""
    with connect(url, token) as client:
        page = client.get(
            "/v1/requests", source=source, verdict=verdict, limit=limit, cursor=cursor
        )
    show_page(page, as_json, _REQUEST_COLUMNS)


@requests.command("show")
@one_line_errors
def requests_show(
    request_id: Annotated[str, typer.Argument(help="Request id (req_...).")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One request: its headers (credentials redacted), verdict and, if authenticated, body."""
    with connect(url, token) as client:
        found = client.get(f"/v1/requests/{request_id}")
    show(found, as_json, lambda: details(found))


# Jobs

_JOB_COLUMNS = (
    ("ID", lambda j: j["id"]),
    ("KIND", lambda j: j["kind"]),
    ("STATUS", lambda j: j["status"]),
    ("DONE", lambda j: j["done"]),
    ("TOTAL", lambda j: j["total"]),
    ("CREATED", lambda j: j["created_at"]),
)


@jobs.command("list")
@one_line_errors
def jobs_list(
    kind: Annotated[str | None, typer.Option(help="recover or replay.")] = None,
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded or failed.")
    ] = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """Recover and replay jobs, newest first."""
    with connect(url, token) as client:
        page = client.get("/v1/jobs", kind=kind, status=status, limit=limit, cursor=cursor)
    show_page(page, as_json, _JOB_COLUMNS)


JobArgument = Annotated[str, typer.Argument(help="Job id (job_...).")]


@jobs.command("show")
@one_line_errors
def jobs_show(
    job_id: JobArgument,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One job: its progress, result or error."""
    with connect(url, token) as client:
        job = client.get(f"/v1/jobs/{job_id}")
    show(job, as_json, lambda: details(job, title=f"job {job_id}"))


@jobs.command("wait")
@one_line_errors
def jobs_wait(
    job_id: JobArgument,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a job until it ends; exits 1 if it failed."""
    with connect(url, token) as client:
        _follow(client, {"id": job_id}, wait=True, as_json=as_json)


# Deliveries

_DELIVERY_COLUMNS = (
    ("ID", lambda d: d["id"]),
    ("EVENT", lambda d: d["event_id"]),
    ("SUBSCRIPTION", lambda d: d["subscription_id"]),
    ("STATUS", lambda d: d["status"]),
    ("ATTEMPTS", lambda d: d["attempt_count"]),
    ("LAST CODE", lambda d: d["last_status_code"]),
    ("UPDATED", lambda d: d["updated_at"]),
)

_ATTEMPT_COLUMNS = (
    ("#", lambda a: a["attempt_number"]),
    ("STARTED", lambda a: a["started_at"]),
    ("MS", lambda a: a["duration_ms"]),
    ("STATUS", lambda a: a["response_status"]),
    ("ERROR", lambda a: a["error_class"]),
    ("OUTCOME", lambda a: a["outcome"]),
    ("DECISION", lambda a: a["decision"]),
)


@deliveries.command("list")
@one_line_errors
def deliveries_list(
    subscription: Annotated[str | None, typer.Option(help="Subscription id.")] = None,
    event: Annotated[str | None, typer.Option(help="Event id.")] = None,
    status: Annotated[str | None, typer.Option(help="pending, succeeded or failed.")] = None,
    since: SinceOption = None,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
) -> None:
    """List deliveries, newest first."""
    with connect(url, token) as client:
        page = client.get(
            "/v1/deliveries",
            subscription_id=subscription,
            event_id=event,
            status=status,
            since=_moment(since),
            limit=limit,
            cursor=cursor,
        )
    show_page(page, as_json, _DELIVERY_COLUMNS)


@deliveries.command("show")
@one_line_errors
def deliveries_show(
    delivery_id: Annotated[str, typer.Argument(help="Delivery id.")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a delivery and every attempt made."""
    with connect(url, token) as client:
        delivery = client.get(f"/v1/deliveries/{delivery_id}")
    if as_json:
        print_json(delivery)
        return
    summary = {key: value for key, value in delivery.items() if key != "attempts"}
    out = console()
    out.print(details(summary))
    out.print(table(delivery["attempts"], _ATTEMPT_COLUMNS, title="attempts"))


@deliveries.command("retry")
@one_line_errors
def deliveries_retry(
    delivery_id: Annotated[str, typer.Argument(help="Delivery id.")],
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a delivery now: a finished one goes back in the queue, a pending one skips its
    wait for the next retry."""
    with connect(url, token) as client:
        delivery = client.post(f"/v1/deliveries/{delivery_id}/retry")
    show(delivery, as_json, lambda: details(delivery, title="delivery queued again"))


# Recover and stats


@one_line_errors
def recover(
    subscription_id: SubscriptionArgument,
    since: Annotated[
        str, typer.Option(help="Deliveries created from: ISO 8601 or back from now (12h).")
    ],
    until: UntilOption = None,
    status: Annotated[
        str,
        typer.Option(
            help="failed: put failed deliveries back in the queue; pending: send those "
            "waiting for their next retry now."
        ),
    ] = "failed",
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = True,
    url: UrlOption = DEFAULT,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-queue a subscription's failed deliveries in a window (or send its waiting ones now),
    as a background job; a failing subscription is probed at once."""
    with connect(url, token) as client:
        job = client.post(
            f"/v1/subscriptions/{subscription_id}/recover",
            {"since": parse_moment(since), "until": _moment(until), "status": status},
        )
        _follow(client, job, wait=wait, as_json=as_json)


_WINDOWS = (("last_hour", "last hour"), ("last_day", "last 24 hours"))
_WINDOW_COLUMNS: tuple[tuple[str, Any], ...] = (
    ("RECEIVED", lambda w: count(w["received"])),
    ("DELIVERED", lambda w: count(w["delivered"])),
    ("FAILED", lambda w: count(w["failed"])),
    ("PENDING", lambda w: count(w["pending"])),
    ("P50", lambda w: milliseconds(w["latency_p50_ms"])),
    ("P99", lambda w: milliseconds(w["latency_p99_ms"])),
)


def stats_tables(numbers: dict[str, Any]) -> list[Any]:
    """The subscriptions with their URL and state, then one table a window: a single table with
    every number has too many columns for a terminal, and its headers split."""
    subscriptions = numbers["subscriptions"]
    tables = [
        table(
            subscriptions,
            (
                ("SUBSCRIPTION", lambda s: s["subscription_id"]),
                ("STATE", lambda s: s["liveness"]),
                ("PENDING NOW", lambda s: count(s["pending_now"])),
                ("URL", lambda s: s["url"]),
            ),
            title=f"subscriptions (pending now, all: {count(numbers['overall']['pending_now'])})",
        )
    ]
    rows = [{"scope": "all", **numbers["overall"]}] + [
        {"scope": item["subscription_id"], **item} for item in subscriptions
    ]
    for key, label in _WINDOWS:
        columns: list[tuple[str, Any]] = [("SCOPE", lambda row: row["scope"])]
        columns += [
            (name, lambda row, get=get, key=key: get(row[key])) for name, get in _WINDOW_COLUMNS
        ]
        tables.append(table(rows, columns, title=f"{label} (P50, P99: latency to the first 2xx)"))
    return tables


@one_line_errors
def stats(url: UrlOption = DEFAULT, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Received, delivered, failed, pending and latency for the last hour and day."""
    with connect(url, token) as client:
        numbers = client.get("/v1/stats")
    if as_json:
        print_json(numbers)
        return
    out = console()
    out.print(f"relay stats at {numbers['generated_at']}")
    for part in stats_tables(numbers):
        out.print(part)
