"""Every `relay` command, run with `--json` against a real `relay serve`: stdout is exactly one
JSON document, whatever the command logs (logs go to stderr)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import typer.main
from typer.core import TyperGroup
from typer.testing import CliRunner

from relay import __version__
from relay.app import create_app
from relay.cli import app
from relay.core.crypto import new_key
from relay.core.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.processes import RELAY, serve_for_cli
from tests.support.relay import ROUTESTRIPE_SECRET, post_routestripe, visit_event
from tests.support.subscriber import Answer, Subscriber, eventually

# They run until stopped: `tail --json` and `listen --json` print one JSON document a line.
LONG_RUNNING = {"serve", "worker", "tail", "listen"}
# These open the database themselves, where logs used to come first: run as real processes.
# The others only talk to the API and run in this process, which is faster.
OPEN_THE_DATABASE = {"migrate", "encryption", "api-keys", "purge"}

# Each command once, in an order where what one deletes is not needed after. {name} is an id
# made by the set-up below.
RUNS: list[tuple[str, ...]] = [
    ("version",),
    ("migrate",),
    ("encryption", "new-key"),
    ("encryption", "rotate"),
    ("api-keys", "create", "--scope", "read", "--name", "doc"),
    ("api-keys", "list"),
    ("api-keys", "revoke", "{api_key}"),
    ("purge", "--dry-run"),
    ("purge",),
    ("stats",),
    ("sources", "list"),
    (
        "sources",
        "create",
        "--slug",
        "third",
        "--vendor",
        "routestripe",
        "--verification",
        '{{"secret": "routestripe-secret-0123456789"}}',
    ),
    ("sources", "show", "{source}"),
    ("sources", "test", "rs"),
    ("subscriptions", "list"),
    ("subscriptions", "create", "{hook}", "--type", "route.*"),
    ("subscriptions", "show", "{subscription}"),
    ("subscriptions", "rotate-secret", "{subscription}"),
    ("subscriptions", "test", "{subscription}"),
    ("events", "list"),
    ("events", "show", "{event}"),
    ("events", "replay", "{event}"),
    ("events", "replay", "--since", "1h"),
    ("deliveries", "list"),
    ("deliveries", "show", "{delivery}"),
    ("deliveries", "retry", "{delivery}"),
    ("recover", "{subscription}", "--since", "1h", "--no-wait"),
    ("event-types",),
    ("requests", "list", "--source", "rs"),
    ("requests", "show", "{request}"),
    ("jobs", "list"),
    ("jobs", "show", "{job}"),
    ("jobs", "wait", "{job}"),
    ("sources", "update", "rs", "--description", "the Dutch account"),
    ("sources", "rotate", "rs", "--verification", '{{"secret": "routestripe-new-0123456789"}}'),
    ("subscriptions", "update", "{subscription}", "--description", "ops"),
    ("subscriptions", "pause", "{subscription}"),
    ("subscriptions", "resume", "{subscription}"),
    ("subscriptions", "attempts", "{subscription}"),
    ("subscriptions", "delete", "{subscription}", "--yes"),
    ("sources", "delete", "{second_source}", "--yes"),
]

# Routes whose command is not named resource + verb, and why.
NAMED_OTHERWISE = {
    ("GET", "/v1/activity"): ("tail",),  # follows the activity feed live
    ("GET", "/v1/stats"): ("stats",),
    ("GET", "/v1/event-types"): ("event-types",),
    ("POST", "/v1/subscriptions/{subscription_id}/recover"): ("recover",),
    ("DELETE", "/v1/api-keys/{api_key_id}"): ("api-keys", "revoke"),  # a key is revoked, kept
}


def command_for(method: str, path: str) -> tuple[str, ...]:
    """The command a route should have: its resource, then its verb or action."""
    if (method, path) in NAMED_OTHERWISE:
        return NAMED_OTHERWISE[method, path]
    resource, *rest = path.removeprefix("/v1/").split("/")
    if not rest:
        return (resource, {"GET": "list", "POST": "create"}[method])
    if len(rest) == 1 and rest[0].startswith("{"):
        return (resource, {"GET": "show", "PATCH": "update", "DELETE": "delete"}[method])
    return (resource, rest[-1])


def test_every_admin_route_has_its_command(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, encryption_key=new_key())  # type: ignore[arg-type]
    document = create_app(settings).openapi()
    commands = set(command_paths())
    routes = [
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/v1/")
        for method in operations
    ]
    assert len(routes) > 25
    missing = [
        (route, command_for(*route)) for route in routes if command_for(*route) not in commands
    ]
    assert not missing, f"routes without a command: {missing}"


def command_paths() -> list[tuple[str, ...]]:
    """Every leaf command of the `relay` tree, as the words that run it."""
    found: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(typer.main.get_command(app), ())
    return found


def test_every_command_takes_json_and_is_run_below() -> None:
    paths = command_paths()
    assert len(paths) > 20
    without = [path for path in paths if path[0] not in LONG_RUNNING and not _has_json(path)]
    assert not without, f"commands without --json: {without}"
    runnable = {path for path in paths if path[0] not in LONG_RUNNING}
    run = {_words(args, runnable) for args in RUNS}
    assert runnable <= run, f"not run with --json below: {sorted(runnable - run)}"


def _has_json(path: tuple[str, ...]) -> bool:
    command: Any = typer.main.get_command(app)
    for word in path:
        assert isinstance(command, TyperGroup)
        command = command.commands[word]
    return any("--json" in param.opts for param in command.params)


def _words(args: tuple[str, ...], known: set[tuple[str, ...]]) -> tuple[str, ...]:
    for length in (2, 1):
        if args[:length] in known:
            return args[:length]
    raise AssertionError(f"{args} is no command")


def test_version_flag() -> None:
    done = subprocess.run(
        [RELAY, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{__version__}\n"


@pytest.fixture(scope="module")
def served(
    module_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str], Path]]:
    workdir = tmp_path_factory.mktemp("relay-every-command")
    with serve_for_cli(module_database_url, workdir) as (url, env):
        yield url, env, workdir


async def _ids(url: str, env: dict[str, str], subscriber: Subscriber) -> dict[str, str]:
    """A source, a subscription, an event with a succeeded delivery, a second source, an API
    key: what the commands above act on."""
    subscriber.script("/hook", then=Answer(200))
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as api:
        source = await api.post(
            "/v1/sources",
            json={
                "slug": "rs",
                "vendor": "routestripe",
                "verification": {"type": "hmac", "secret": ROUTESTRIPE_SECRET},
            },
        )
        second = await api.post(
            "/v1/sources",
            json={
                "slug": "other",
                "vendor": "routigo",
                "verification": {"token": "routigo-token-0123456789"},
            },
        )
        subscription = await api.post("/v1/subscriptions", json={"url": subscriber.url("/hook")})
        key = await api.post("/v1/api-keys", json={"name": "to-revoke", "scope": "read"})
        posted = await post_routestripe(api, [visit_event()])
        [event] = posted.json()["event_ids"]

        async def delivered() -> bool:
            page = await api.get("/v1/deliveries", params={"status": "succeeded"})
            return bool(page.json()["data"])

        await eventually(delivered, within=20)
        delivery = (await api.get("/v1/deliveries")).json()["data"][0]["id"]
        request = (await api.get("/v1/requests")).json()["data"][0]["id"]
        job = await api.post(
            "/v1/events/replay", json={"since": "2000-01-01T00:00:00Z", "source": "rs"}
        )
    for made in (source, second, subscription, key):
        assert made.status_code == 201, made.text
    return {
        "source": source.json()["id"],
        "second_source": second.json()["id"],
        "subscription": subscription.json()["id"],
        "api_key": key.json()["id"],
        "event": event,
        "delivery": delivery,
        "request": request,
        "job": job.json()["id"],
        "hook": subscriber.url("/hook"),
    }


# About forty commands, a quarter of them processes of their own, on a shared 2-core machine.
@pytest.mark.timeout(300)
async def test_every_command_prints_one_json_document_with_json(
    served: tuple[str, dict[str, str], Path], engine: Any, subscriber: Subscriber
) -> None:
    url, env, workdir = served
    ids = await _ids(url, env, subscriber)
    for args in RUNS:
        words = [arg.format(**ids) for arg in args] + ["--json"]
        if args[0] in OPEN_THE_DATABASE:
            done = await asyncio.to_thread(
                subprocess.run,
                [RELAY, *words],
                cwd=workdir,
                env=env,
                capture_output=True,
                timeout=60,
                check=False,
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        else:
            result = await asyncio.to_thread(CliRunner().invoke, app, words, env=env)
            code, out, err = result.exit_code, result.stdout_bytes, result.stderr_bytes
        assert code == 0, (args, out, err)
        try:
            orjson.loads(out)
        except orjson.JSONDecodeError:
            pytest.fail(f"relay {' '.join(args)} --json printed {out[:500]!r}")
        assert b"Traceback" not in err
