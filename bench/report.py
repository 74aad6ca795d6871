"""What a run reports: each figure against its floor and target as a table, the JSON results,
and the plot of figure 3's latency distribution."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

TARGETS = {
    "ingest_ratio": 0.70,
    "dispatch_ratio": 0.60,
    "latency_p50_ms": 10.0,
    "latency_p99_ms": 50.0,
    "claim_ratio": 2.0,
    "memory_mb": 200.0,
    "fanout_ratio": 2.0,
    "isolation_ratio": 2.0,
}


def _row(
    figure: str, value: str, floor: str, ratio: float | None, target: str, met: bool
) -> dict[str, Any]:
    return {
        "figure": figure,
        "value": value,
        "floor": floor,
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "met": met,
    }


def _fanout_costs(runs: list[dict[str, float]]) -> dict[str, float]:
    """Extra milliseconds each delivery row adds to a request, between consecutive runs."""
    costs = {}
    for before, after in itertools.pairwise(runs):
        rows = after["subscriptions"] - before["subscriptions"]
        extra = after["ms_per_request"] - before["ms_per_request"]
        costs[f"{before['subscriptions']}->{after['subscriptions']}"] = extra / rows
    return costs


def summarize(
    figures: dict[str, Any], *, profile: dict[str, Any], machine: dict[str, Any], seconds: float
) -> dict[str, Any]:
    ingest, dispatch, latency = figures["ingest"], figures["dispatch"], figures["latency"]
    claim, memory, fanout = figures["claim"], figures["memory"], figures["fanout"]
    isolation = figures["isolation"]
    crowded = isolation["with_hanging"]
    costs = _fanout_costs(fanout["runs"])
    fanout["cost_per_row_ms"] = costs
    first_cost, last_cost = next(iter(costs.values())), list(costs.values())[-1]
    # A cost at or under zero means a row costs nothing measurable: flat by any standard.
    fanout["ratio"] = last_cost / first_cost if first_cost > 0 else None
    fanout_met = last_cost <= TARGETS["fanout_ratio"] * max(first_cost, 0.0) or last_cost <= 0

    rows = [
        _row(
            "1 ingest (Bringg run_started, 3 subscriptions), webhooks/s",
            f"{ingest['relay_per_s']:.0f}",
            f"{ingest['floor_per_s']:.0f}",
            ingest["ratio"],
            ">= 70 % of floor",
            ingest["ratio"] >= TARGETS["ingest_ratio"],
        ),
        _row(
            "1 ingest, RouteStripe batches of 50, events/s",
            f"{ingest['routestripe_events_per_s']:.0f}",
            "-",
            None,
            "(reported)",
            True,
        ),
        _row(
            f"2 dispatch ({dispatch['deliveries']} backlog, 1 worker), deliveries/s",
            f"{dispatch['relay_per_s']:.0f}",
            f"{dispatch['floor_per_s']:.0f}",
            dispatch["ratio"],
            ">= 60 % of floor",
            dispatch["ratio"] >= TARGETS["dispatch_ratio"],
        ),
        _row(
            f"3 end-to-end latency at {latency['rate']:g}/s ({latency['delivered']} of "
            f"{latency['sent']} delivered, {latency['skipped']} not sent), "
            "p50 / p90 / p99 / max ms",
            f"{latency['p50_ms']:.1f} / {latency['p90_ms']:.1f} / "
            f"{latency['p99_ms']:.1f} / {latency['max_ms']:.1f}",
            "-",
            None,
            "p50 <= 10, p99 <= 50",
            latency["p50_ms"] <= TARGETS["latency_p50_ms"]
            and latency["p99_ms"] <= TARGETS["latency_p99_ms"]
            and latency["delivered"] == latency["sent"]
            and not latency["skipped"],
        ),
        _row(
            f"4 claim batch of {claim['batch']}, {claim['large_rows']:,} vs "
            f"{claim['small_rows']:,} rows, ms",
            f"{claim['large_ms']:.2f}",
            f"{claim['small_ms']:.2f}",
            claim["ratio"],
            "ratio < 2",
            claim["ratio"] < TARGETS["claim_ratio"],
        ),
        _row(
            "5 peak RSS of relay serve during 1, MB",
            f"{memory['serve_peak_mb']:.0f}",
            f"{memory['serve_floor_mb']:.0f}",
            memory["serve_peak_mb"] / memory["serve_floor_mb"],
            "< 200 MB",
            memory["serve_peak_mb"] < TARGETS["memory_mb"],
        ),
        _row(
            "5 peak RSS of relay worker during 2, MB",
            f"{memory['worker_peak_mb']:.0f}",
            f"{memory['worker_floor_mb']:.0f}",
            memory["worker_peak_mb"] / memory["worker_floor_mb"],
            "< 200 MB",
            memory["worker_peak_mb"] < TARGETS["memory_mb"],
        ),
        _row(
            "6 fan-out: webhooks/s at "
            + " / ".join(str(run["subscriptions"]) for run in fanout["runs"])
            + " subscriptions",
            " / ".join(f"{run['per_s']:.0f}" for run in fanout["runs"]),
            "-",
            None,
            "(reported)",
            True,
        ),
        _row(
            "6 fan-out: ms per delivery row, " + " vs ".join(costs),
            f"{last_cost:.3f}",
            f"{first_cost:.3f}",
            fanout["ratio"],
            "flat (ratio <= 2)",
            fanout_met,
        ),
        _row(
            f"7 isolation: healthy subscriber at {isolation['rate']:g}/s beside "
            f"{isolation['hanging']} hanging subscriptions ({crowded['delivered']} of "
            f"{crowded['sent']} delivered), p99 ms",
            f"{crowded['p99_ms']:.1f}",
            f"{isolation['alone']['p99_ms']:.1f} alone",
            isolation["ratio"],
            "ratio <= 2",
            isolation["ratio"] <= TARGETS["isolation_ratio"]
            and crowded["delivered"] == crowded["sent"],
        ),
    ]
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": profile,
        "machine": machine,
        "seconds": round(seconds, 1),
        "targets": TARGETS,
        "table": rows,
        "figures": figures,
    }


def print_table(results: dict[str, Any]) -> None:
    headers = ("figure", "value", "floor", "ratio", "target", "met?")
    lines = [
        (
            row["figure"],
            row["value"],
            row["floor"],
            "-" if row["ratio"] is None else f"{row['ratio']:.2f}",
            row["target"],
            "yes" if row["met"] else "NO",
        )
        for row in results["table"]
    ]
    widths = [
        max(len(str(cell)) for cell in column) for column in zip(headers, *lines, strict=True)
    ]
    for line in (headers, *lines):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
    machine = results["machine"]
    print(
        f"\n{machine['cpus']} x {machine['cpu_model']}, {machine['memory_gb']} GB, PostgreSQL "
        f"{machine['postgresql']}, load generator {machine['load_generator']}; "
        f"run took {results['seconds']:.0f} s ({results['profile']['name']} profile)"
    )


def plot_latency(latencies: list[float], target: Path, *, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5), dpi=100)
    axis.hist(latencies, bins=100, color="#4477aa")
    ordered = sorted(latencies)
    for percent, style in ((50, "-"), (90, "--"), (99, ":")):
        value = ordered[min(len(ordered) - 1, round(percent / 100 * len(ordered)) - 1)]
        axis.axvline(value, color="#cc3311", linestyle=style, label=f"p{percent} {value:.1f} ms")
    axis.set_xlabel("vendor POST sent -> subscriber received (ms)")
    axis.set_ylabel("webhooks")
    axis.set_title(f"End-to-end latency at {rate:g} webhooks/s ({len(latencies)} webhooks)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)


def write_results(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    latency = results["figures"]["latency"]
    # The plot keeps the distribution; the JSON keeps its percentiles, not 6,000 samples.
    plot_latency(latency.pop("latencies_ms"), directory / "latency.png", rate=latency["rate"])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2)
    path.write_bytes(data)
    (directory / "latest.json").write_bytes(data)
    return path
