"""`relay listen`: a subscriber on this machine that shows what the relay delivers to it."""

from __future__ import annotations

import hmac
import signal
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Annotated, Any

import orjson
import typer

from relay.client.options import fail
from relay.dispatcher.signing import secret_key_bytes, sign

# Standard Webhooks' advice: refuse a timestamp further than five minutes from now (replays).
TOLERANCE_SECONDS = 300
# How often the serving loop looks whether it was asked to stop.
_STOP_CHECK = 0.2


def verdict(secret: str | None, headers: Mapping[str, str], body: bytes, *, now: float) -> str:
    """`verified`, `unverified` (no --secret) or why the signature does not hold."""
    if secret is None:
        return "unverified"
    msg_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        return "not signed (no webhook-id, webhook-timestamp or webhook-signature)"
    try:
        timestamp = int(stamp)
    except ValueError:
        return f"bad webhook-timestamp {stamp!r}"
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        return "bad signature (timestamp more than 5 minutes away)"
    expected = sign([secret], msg_id=msg_id, timestamp=timestamp, body=body)
    if any(hmac.compare_digest(expected, given) for given in signatures.split()):
        return "verified"
    return "bad signature (another secret?)"


def received(
    path: str, headers: Mapping[str, str], body: bytes, secret: str | None
) -> dict[str, Any]:
    """What a delivery says about itself, for one line of output."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        envelope = None
    if not isinstance(envelope, dict):
        envelope = {}
    return {
        "received_at": datetime.now(UTC).isoformat(),
        "path": path,
        "event_type": headers.get("x-relay-event-type") or envelope.get("type"),
        "event_id": headers.get("webhook-id") or envelope.get("id"),
        "delivery_id": headers.get("x-relay-delivery-id"),
        "attempt": headers.get("x-relay-attempt"),
        "signature": verdict(secret, headers, body, now=time.time()),
    }


def line(delivery: dict[str, Any]) -> str:
    at = datetime.fromisoformat(delivery["received_at"]).strftime("%H:%M:%S.%f")[:-3]
    return (
        f"{at}  POST {delivery['path']}  {delivery['event_type'] or '-'}  "
        f"{delivery['event_id'] or '-'}  {delivery['signature']}"
    )


class _Stop:
    requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def listen(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 4000,
    secret: Annotated[
        str | None,
        typer.Option(
            help="The subscription's signing secret (whsec_...): check each delivery's "
            "Standard Webhooks signature.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Serve a subscriber on http://127.0.0.1:PORT that answers every POST with 200 and prints
    each delivery (event type, id, signature verified or not), until Ctrl-C or SIGTERM."""
    if secret is not None:
        try:
            secret_key_bytes(secret)
        except ValueError as exc:
            raise fail(f"--secret: {exc}") from None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {key.lower(): value for key, value in self.headers.items()}
            delivery = received(self.path, headers, body, secret)
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
            sys.stdout.write(
                (orjson.dumps(delivery).decode() if as_json else line(delivery)) + "\n"
            )
            sys.stdout.flush()

        def log_message(self, format: str, *args: Any) -> None:
            # The delivery line says it all; the default access log would repeat it on stderr.
            return

    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.timeout = _STOP_CHECK
    sys.stderr.write(
        f"listening on http://127.0.0.1:{port} "
        f"({'checking signatures' if secret else 'no --secret: signatures not checked'}; "
        "Ctrl-C to stop)\n"
    )
    sys.stderr.flush()
    with server:
        while not stop.requested:
            server.handle_request()
