"""Figure 3, a process of its own: the vendor and the subscriber in one process, so one
monotonic clock times each webhook from the moment its POST is sent to the relay until its
delivery reaches the subscriber: each of its deliveries when several subscriptions (one path
each on the subscriber) want it. The id comes from the relay's envelope, or from the raw Bringg
body that the FastAPI + procrastinate peer forwards as it came.

Webhooks leave on a fixed schedule (open loop: a slow answer does not slow the sending), after
a warm-up whose webhooks are not counted. Writes a JSON file with every latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import orjson
import uvicorn

from bench.http1 import Vendor
from bench.payloads import BRINGG_TOKEN, bringg_body, bringg_template

MAX_IN_FLIGHT = 100


class Clock:
    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        # (webhook id, subscriber path) -> first arrival: a retried delivery counts once.
        self.received: dict[tuple[str, str], float] = {}
        self.answered: dict[str, float] = {}
        self.answered_200 = 0
        self.failed = 0

    async def subscriber(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        now = time.monotonic()
        document = orjson.loads(b"".join(chunks))
        subject = document["subject"]["id"] if "subject" in document else document["run"]["id"]
        self.received.setdefault((str(subject), scope["path"]), now)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def measure(
    relay_url: str,
    port: int,
    *,
    rate: float,
    duration: float,
    warmup: float,
    first_id: int,
    per_webhook: int = 1,
) -> dict[str, Any]:
    clock = Clock()
    config = uvicorn.Config(
        clock.subscriber,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        interface="asgi3",
    )
    server = uvicorn.Server(config)
    server_task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn has no startup event to await
            await asyncio.sleep(0.01)

    template = bringg_template()
    headers = {"Authorization": f"Bearer {BRINGG_TOKEN}", "Content-Type": "application/json"}
    url = urlsplit(relay_url)
    vendor = Vendor(url.hostname or "127.0.0.1", url.port or 80, url.path, headers)
    measured: list[str] = []
    try:

        async def post(run_id: int) -> None:
            body = bringg_body(template, run_id)
            clock.sent[str(run_id)] = time.monotonic()
            try:
                async with asyncio.timeout(30):
                    status = await vendor.post(body)
            except (OSError, TimeoutError, h11.ProtocolError):
                clock.failed += 1
                return
            if status == 200:
                clock.answered_200 += 1
                clock.answered[str(run_id)] = time.monotonic()
            else:
                clock.failed += 1

        total = int((warmup + duration) * rate)
        warm = int(warmup * rate)
        tasks: list[asyncio.Task[None]] = []
        skipped = 0
        start = time.monotonic()
        for number in range(total):
            delay = start + number / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # A relay that has fallen this far behind is not keeping the rate: skip rather than
            # open ever more connections to it.
            if sum(not task.done() for task in tasks[-MAX_IN_FLIGHT * 2 :]) >= MAX_IN_FLIGHT:
                skipped += number >= warm
                continue
            run_id = first_id + number
            if number >= warm:
                measured.append(str(run_id))
            tasks.append(asyncio.create_task(post(run_id)))
        sending_seconds = time.monotonic() - start
        # Past this deadline the relay is not keeping up: what has not arrived by then is
        # reported as not delivered rather than waited for.
        deadline = time.monotonic() + max(20.0, duration)
        _answered, unanswered = await asyncio.wait(tasks, timeout=max(20.0, duration))
        for task in unanswered:
            task.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)

        waiting = set(measured)
        while waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            by_subject: dict[str, int] = {}
            for subject, _path in clock.received:
                by_subject[subject] = by_subject.get(subject, 0) + 1
            waiting = {key for key in waiting if by_subject.get(key, 0) < per_webhook}
    finally:
        vendor.close()

    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        async with asyncio.timeout(5):
            await server_task
    measured_set = set(measured)
    latencies = [
        (moment - clock.sent[subject]) * 1000
        for (subject, _path), moment in clock.received.items()
        if subject in measured_set
    ]
    arrivals: dict[str, int] = {}
    for subject, _path in clock.received:
        arrivals[subject] = arrivals.get(subject, 0) + 1
    return {
        "sent": len(measured),
        "per_webhook": per_webhook,
        # Webhooks all of whose deliveries arrived; the latencies are one per delivery.
        "delivered_webhooks": sum(arrivals.get(key, 0) >= per_webhook for key in measured),
        "skipped": skipped,
        "answered_200": clock.answered_200,
        "failed": clock.failed,
        "delivered": len(latencies),
        "offered_rate": rate,
        "achieved_rate": total / sending_seconds,
        "latencies_ms": latencies,
        "answer_ms": sorted(
            (clock.answered[key] - clock.sent[key]) * 1000
            for key in measured
            if key in clock.answered
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("relay_url")
    parser.add_argument("--port", type=int, required=True, help="Port the subscriber binds.")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--first-id", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--per-webhook", type=int, default=1, help="Deliveries each webhook should bring."
    )
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(
        measure(
            args.relay_url,
            args.port,
            rate=args.rate,
            duration=args.duration,
            warmup=args.warmup,
            first_id=args.first_id,
            per_webhook=args.per_webhook,
        )
    )
    args.out.write_bytes(orjson.dumps(result))
    summary = {key: value for key, value in result.items() if not key.endswith("_ms")}
    sys.stdout.write(orjson.dumps(summary).decode() + "\n")


if __name__ == "__main__":
    main()
