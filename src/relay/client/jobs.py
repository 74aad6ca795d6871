"""Following a recover or replay job until it ends, with a progress bar on a terminal."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from relay.client.http import ApiError, RelayClient
from relay.client.render import console

POLL_INTERVAL = 0.5
FINISHED = ("succeeded", "failed")


def wait_for_job(client: RelayClient, job_id: str, *, show_progress: bool) -> dict[str, Any]:
    """Polls GET /v1/jobs/{id} until the job ends; returns it, ApiError if it failed."""
    job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
    if show_progress:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(stderr=True),
            transient=False,
        ) as progress:
            task = progress.add_task(f"{job['kind']} {job_id}", total=job.get("total"))
            while True:
                progress.update(task, completed=job["done"], total=job.get("total"))
                if job["status"] in FINISHED:
                    break
                time.sleep(POLL_INTERVAL)
                job = client.get(f"/v1/jobs/{job_id}")
    else:
        while job["status"] not in FINISHED:
            time.sleep(POLL_INTERVAL)
            job = client.get(f"/v1/jobs/{job_id}")
    if job["status"] == "failed":
        raise ApiError(f"job {job_id} failed: {job.get('error') or 'see the relay log'}")
    return job
