"""DATABASE_URL as users write it (issue 18, #23), on the real backend: SQLite files and memory in the usual forms,
PostgreSQL (a real server, when the machine has one) through `postgresql://`, and a one-line error where the
driver is missing or the URL is not one we accept."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import BACKEND, BIN, backend_proc, free_port, serving


def exercise(c: httpx.Client) -> None:
    assert c.post("/api/household/members", json={"name": "Emma"}).status_code == 201
    task = c.post("/api/tasks", json={"title": "Mow the lawn", "notes": "front and back", "category": "garden"})
    assert task.status_code == 201, task.text
    assert c.patch(f"/api/tasks/{task.json()['id']}", json={"done": True}).json()["done_at"]
    assert [t["title"] for t in c.get("/api/tasks").json()] == ["Mow the lawn"]
    assert c.get("/api/tasks/3000000000").status_code == 422  # beyond what the id column holds: not a 500
    assert c.post("/api/ml/similar", json={"text": "cut the grass"}).status_code == 503  # no source configured


@pytest.mark.parametrize("form", ["file", "memory"])
def test_sqlite_as_users_write_it(tmp_path: Path, form: str) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}" if form == "file" else "sqlite://"
    with serving(backend_proc(free_port(), tmp_path, DATABASE_URL=url, ML_FALLBACK_ORDER="ml-service")) as c:
        exercise(c)
    assert (tmp_path / "x.db").exists() == (form == "file")


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of the machine's own (Debian's postgresql), on a free port, for this test."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("no PostgreSQL on this machine (apt-get install postgresql)")
    bin_dir = Path(found[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="backend-pg-"))  # not under pytest's root-only directory
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []  # PostgreSQL refuses to run as root
    if as_user:
        shutil.chown(data, "nobody", "nogroup")
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "app"],
                   check=True, capture_output=True)
    port = free_port()
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w",
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)
    try:
        yield f"postgresql://app@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_postgresql_as_users_write_it(tmp_path: Path, postgres: str) -> None:
    """`postgresql://` (and Heroku's `postgres://`) run on asyncpg; the tables come from the migrations; a
    restart finds them (the migrations run again, changing nothing)."""
    pytest.importorskip("asyncpg")
    with serving(backend_proc(free_port(), tmp_path, DATABASE_URL=postgres, ML_FALLBACK_ORDER="ml-service")) as c:
        exercise(c)
    again = postgres.replace("postgresql://", "postgres://")
    with serving(backend_proc(free_port(), tmp_path, DATABASE_URL=again, ML_FALLBACK_ORDER="ml-service")) as c:
        assert [t["title"] for t in c.get("/api/tasks").json()] == ["Mow the lawn"]


def start_and_fail(tmp_path: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "uvicorn"), "app.main:app", "--port", str(free_port())], cwd=BACKEND,
                          env={**os.environ, "DATABASE_URL": url, **env}, capture_output=True, text=True, timeout=60)


def test_a_missing_postgresql_driver_is_one_line(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "asyncpg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'asyncpg'\")\n")  # as if not installed
    done = start_and_fail(tmp_path, "postgresql://app:s3cret@db:5432/household",
                          PYTHONPATH=os.pathsep.join([str(shadow.parent), *sys.path]))
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, lines
    assert "driver asyncpg is not installed: pip install 'ml-service-backend[postgres]'" in lines[0]
    assert "s3cret" not in lines[0]


def test_a_url_we_cannot_use_is_one_line(tmp_path: Path) -> None:
    done = start_and_fail(tmp_path, "household.db")
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "DATABASE_URL must be sqlite:///" in lines[0], lines
