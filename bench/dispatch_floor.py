"""The dispatch floor, a process of its own: the relay's own HTTP client and `send` (signing
included) posting the same bodies to the same subscriber at the dispatcher's concurrency, on
the same event loop as `relay worker` (asyncio's own), with no database. Prints one JSON line,
with the CPU it used posting and the errors of the posts that failed."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import orjson

from relay.core.netguard import DestinationPolicy
from relay.dispatcher.sender import OutgoingDelivery, create_client, send

# The bench's subscriber listens on loopback, which the relay refuses unless allowed.
LOOPBACK = DestinationPolicy(allowed_networks=(ip_network("127.0.0.0/8"),))


async def post_all(url: str, bodies: list[dict[str, str]], concurrency: int) -> dict[str, Any]:
    client = create_client(max_connections=concurrency, policy=LOOPBACK)
    queue = iter(enumerate(bodies))
    ok = failed = 0
    errors: Counter[str] = Counter()

    async def sender() -> None:
        nonlocal ok, failed
        for number, item in queue:
            result = await send(
                client,
                OutgoingDelivery(
                    url=url,
                    body=item["envelope"].encode(),
                    event_id=item["event_id"],
                    event_type=item["event_type"],
                    delivery_id=f"dlv_floor_{number}",
                    attempt_number=1,
                    secrets=[item["secret"]],
                    custom_headers={},
                ),
                attempt_timeout=15.0,
            )
            if result.status_code == 200:
                ok += 1
            else:
                failed += 1
                errors[f"{result.status_code or result.error_class}: {result.error_message}"] += 1

    started, cpu_started = time.monotonic(), time.process_time()
    try:
        await asyncio.gather(*(sender() for _ in range(concurrency)))
    finally:
        await client.aclose()
    return {
        "ok": ok,
        "failed": failed,
        "seconds": time.monotonic() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "errors": dict(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("bodies", type=Path, help="JSON list of {envelope, event_id, ...}")
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    bodies = orjson.loads(args.bodies.read_bytes())
    result = asyncio.run(post_all(args.url, bodies, args.concurrency))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
