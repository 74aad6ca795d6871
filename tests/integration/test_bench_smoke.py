"""The benchmark harness still works: a tiny run (`python -m bench --smoke`) against the test
PostgreSQL writes results holding every figure, and the latency plot; `--only` measures the
figures it names and no other.

The numbers themselves are not judged here: a smoke run is far too short to mean anything.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import DatabaseServer

ROOT = Path(__file__).resolve().parents[2]


def _median_ratio(values: list[float], floors: list[float]) -> float:
    """The median of each round's own ratio, as a run reports it."""
    return statistics.median(value / floor for value, floor in zip(values, floors, strict=True))


@pytest.mark.timeout(240)
def test_smoke_run_writes_every_figure(database_server: DatabaseServer, tmp_path: Path) -> None:
    results = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            f"--database-url={database_server.server_url}",
            f"--results-dir={results}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]

    latest = orjson.loads((results / "latest.json").read_bytes())
    stamped = [path for path in results.glob("*.json") if path.name != "latest.json"]
    assert len(stamped) == 1
    assert orjson.loads(stamped[0].read_bytes()) == latest
    png = (results / "latency.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) > 5_000

    console = orjson.loads((results / "console" / "latest.json").read_bytes())
    assert set(console["pages"]) >= {"overview", "deliveries", "delivery", "subscription"}
    assert all(page["p95_ms"] > 0 for page in console["pages"].values())

    figures = latest["figures"]
    ingest = figures["ingest"]
    floors = figures["floors"]
    # Figures 1, 2 and 8 alternate the relay and what it is compared with, two rounds each
    # in the smoke profile; a ratio is the median of each round's own.
    relay_rounds = ingest["relay_rounds_per_s"]
    assert len(relay_rounds) == 2
    assert all(rate > 0 for rate in relay_rounds)
    assert ingest["relay_per_s"] == pytest.approx(statistics.median(relay_rounds))
    for floor in ("naive", "same_rows", "same_rows_no_notify"):
        assert len(floors[f"{floor}_rounds_per_s"]) == 2, floor
        assert all(rate > 0 for rate in floors[f"{floor}_rounds_per_s"]), floor
    assert floors["naive_per_s"] == ingest["floor_per_s"]
    assert ingest["ratio"] == pytest.approx(
        _median_ratio(relay_rounds, floors["naive_rounds_per_s"])
    )
    assert ingest["same_rows_ratio"] == pytest.approx(
        _median_ratio(relay_rounds, floors["same_rows_rounds_per_s"])
    )
    assert 0 < ingest["relay_p50_ms"] <= ingest["relay_p99_ms"]
    # Every webhook the same-rows floors answered 200 wrote its 3 deliveries.
    assert floors["same_rows_deliveries"] >= 3 * (
        floors["same_rows_answered"] + floors["same_rows_no_notify_answered"]
    )
    assert ingest["routestripe_events_per_s"] == pytest.approx(
        50 * ingest["routestripe_requests_per_s"]
    )
    dispatch = figures["dispatch"]
    assert dispatch["deliveries"] == 300
    assert len(dispatch["rounds"]) == 2
    for drained in dispatch["rounds"]:
        assert drained["succeeded"] == 300
        assert drained["ratio"] == pytest.approx(drained["relay_per_s"] / drained["floor_per_s"])
        # Each side's sender and the subscriber did work; the worker's database did too.
        assert set(drained["relay_cpu_ms"]) == {"relay", "subscriber", "postgres"}
        assert set(drained["floor_cpu_ms"]) == {"floor", "subscriber", "postgres"}
        assert min(drained["relay_cpu_ms"].values()) > 0
        assert drained["floor_cpu_ms"]["floor"] > 0
        assert drained["floor_cpu_ms"]["subscriber"] > 0
        assert all(isinstance(count, int) for count in drained["failed_attempts"].values())
    assert dispatch["ratio"] == pytest.approx(
        statistics.median(drained["ratio"] for drained in dispatch["rounds"])
    )
    assert dispatch["relay_per_s"] > 0
    assert dispatch["floor_per_s"] > 0
    latency = figures["latency"]
    assert latency["delivered"] > 0
    assert latency["sent"] == 100
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert "latencies_ms" not in latency
    claim = figures["claim"]
    assert (claim["small_rows"], claim["large_rows"]) == (500, 2_000)
    assert claim["small_ms"] > 0
    assert claim["large_ms"] > 0
    memory = figures["memory"]
    for key in ("serve_peak_mb", "worker_peak_mb", "serve_floor_mb", "worker_floor_mb"):
        assert 10 < memory[key] < 2_000, key
    fanout = figures["fanout"]
    assert [run["subscriptions"] for run in fanout["runs"]] == [1, 10, 100]
    assert set(fanout["cost_per_row_ms"]) == {"1->10", "10->100"}

    peer = figures["peer"]
    peer_rounds = peer["ingest"]["rounds_per_s"]
    beside_peer = peer["relay_ingest"]["rounds_per_s"]
    assert len(peer_rounds) == len(beside_peer) == 2
    assert all(rate > 0 for rate in peer_rounds + beside_peer)
    assert peer["ingest_ratio"] == pytest.approx(_median_ratio(beside_peer, peer_rounds))
    assert peer["dispatch"]["drained"] is True
    assert peer["dispatch"]["succeeded"] == peer["dispatch"]["deliveries"] == 50
    assert peer["dispatch_ratio"] == pytest.approx(
        dispatch["relay_per_s"] / peer["dispatch"]["per_s"]
    )
    for side in ("latency", "relay_latency"):
        shape = peer[side]
        assert shape["per_webhook"] == 3
        assert shape["delivered_webhooks"] == shape["sent"] == 20, side
        assert shape["delivered"] == 60, side
    scaling = figures["scaling"]
    assert [run["workers"] for run in scaling["runs"]] == [1, 2]
    for scaled in scaling["runs"]:
        assert scaled["succeeded"] == scaled["deliveries"] == 100
        assert scaled["per_s"] > 0
        assert all(isinstance(count, int) for count in scaled["failed_attempts"].values())
    ceiling = figures["claim_ceiling"]
    assert [run["claimers"] for run in ceiling["runs"]] == [1, 2]
    for claimed in ceiling["runs"]:
        assert claimed["claims_per_s"] > 0
        assert claimed["rows_per_claim"] == ceiling["batch"]
    history = figures["history"]
    assert history["finished_deliveries"] >= 3_000
    assert history["webhooks"] >= 1_000
    assert history["bytes_per_webhook"] > 1_000
    assert history["one_process"]["delivered"] == history["one_process"]["sent"] > 0
    assert isinstance(history["workers"]["available"], bool)

    table = latest["table"]
    assert [row["figure"].split()[0] for row in table] == [
        *("1", "1", "1", "1", "1", "2", "2", "2", "3", "3", "3", "3", "4", "5", "5", "6"),
        *("6", "7", "8", "8", "8", "8", "9", "9", "10", "10"),
    ]
    # The failed attempts' rows hold what the drains' attempts say.
    failures = [row for row in table if "attempts that failed" in row["figure"]]
    for row, drains in zip(failures, (dispatch["rounds"], scaling["runs"]), strict=True):
        failed = sum(sum(drain["failed_attempts"].values()) for drain in drains)
        assert row["met"] is (failed == 0)
        assert (row["value"] == "0") is (failed == 0)
    # Autovacuum's ANALYZE, which this machine's PostgreSQL does not run, was done meanwhile.
    assert figures["autoanalyze"]["tables_analyzed"] > 0
    isolation = figures["isolation"]
    assert isolation["hanging"] == 5
    assert isolation["with_hanging"]["delivered"] == isolation["with_hanging"]["sent"] > 0
    assert all(isinstance(row["met"], bool) for row in table)
    assert "ratio" in run.stdout
    assert "met?" in run.stdout
    assert latest["machine"]["postgresql"]


@pytest.mark.timeout(120)
def test_only_measures_the_figures_named(database_server: DatabaseServer, tmp_path: Path) -> None:
    results = tmp_path / "results"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--smoke",
            "--only=floor",
            f"--database-url={database_server.server_url}",
            f"--results-dir={results}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    latest = orjson.loads((results / "latest.json").read_bytes())
    assert set(latest["figures"]) == {"floors", "memory", "autoanalyze"}
    assert [row["figure"] for row in latest["table"]] == [
        "1 same-rows floor without pg_notify, webhooks/s"
    ]
    assert not (results / "latency.png").exists()


def test_only_refuses_an_unknown_figure() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--only=ingest,speed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "unknown figure(s) speed" in run.stderr
    assert "ingest,floor,dispatch" in run.stderr
