"""The Python load generator, a process of its own: keeps `concurrency` requests in flight for
`duration` seconds and prints one JSON line with what was answered 200.

Used for the RouteStripe batches (each needs its own HMAC) and for every ingest figure when
`wrk` is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time

import httpx
import orjson

from bench.payloads import (
    BRINGG_TOKEN,
    ROUTESTRIPE_BATCH,
    bringg_body,
    bringg_template,
    routestripe_body,
    routestripe_signature,
)


async def generate(
    url: str, kind: str, *, concurrency: int, duration: float, first_id: int
) -> dict[str, float]:
    template = bringg_template()
    ids = itertools.count(first_id, ROUTESTRIPE_BATCH if kind == "routestripe" else 1)
    ok = failed = 0
    # Answer times of the requests answered 200, for the figure's p50 / p99.
    answers: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    def next_request() -> tuple[bytes, dict[str, str]]:
        if kind == "routestripe":
            body = routestripe_body(next(ids))
            return body, {"X-Signature": routestripe_signature(body)}
        return bringg_body(template, next(ids)), {"Authorization": f"Bearer {BRINGG_TOKEN}"}

    async with httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False) as client:
        deadline = time.monotonic() + duration

        async def user() -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline:
                body, headers = next_request()
                headers["Content-Type"] = "application/json"
                sent = time.monotonic()
                try:
                    response = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError:
                    failed += 1
                    continue
                if response.status_code == 200:
                    ok += 1
                    answers.append(time.monotonic() - sent)
                else:
                    failed += 1

        started = time.monotonic()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        seconds = time.monotonic() - started
    answers.sort()

    def percentile(percent: float) -> float:
        if not answers:
            return 0.0
        return 1000 * answers[min(len(answers) - 1, round(percent / 100 * len(answers)))]

    return {
        "ok": ok,
        "failed": failed,
        "seconds": seconds,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--kind", choices=["bringg", "routestripe"], default="bringg")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--first-id", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(
        generate(
            args.url,
            args.kind,
            concurrency=args.concurrency,
            duration=args.duration,
            first_id=args.first_id,
        )
    )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
