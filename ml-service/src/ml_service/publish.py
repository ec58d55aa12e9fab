"""Publishing on disk, atomically: a version directory is copied beside its final place and renamed into it; a
changed file (model.toml, rollback.json) is written beside itself and renamed over it. A running service never
sees anything half-written (`ml-service models add`, `models train`, rollbacks)."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

from ml_service.errors import ManifestError
from ml_service.manifest import load_manifest
from ml_service.repository import ROLLBACK_FILE


def _toml(v: Any) -> str:
    """A TOML value: a string, number, boolean, or an inline table of them."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename."""
    tmp = path.with_name(f".incoming-{path.name}-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def version_numbers(model_dir: Path) -> list[int]:
    """The version directories of a model, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)


def next_version(model_dir: Path) -> int:
    """One above every version directory and every `[versions.N]` table of model.toml."""
    numbers = version_numbers(model_dir)
    try:
        raw = tomllib.loads((model_dir / "model.toml").read_text(encoding="utf-8"))
        numbers += [int(k) for k in raw.get("versions", {}) if k.isdigit()]
    except (OSError, ValueError):
        pass
    return max(numbers, default=0) + 1


def publish_version(model_dir: Path, source: Path, number: int | None = None, ignore: tuple[str, ...] = ()) -> int:
    """Copy `source` (a version's files, less those named in `ignore`) to `<model_dir>/.incoming-N-<pid>`, then
    rename it to `<model_dir>/N`; returns N (default: the next version). FileExistsError when version N exists."""
    number = number or max(version_numbers(model_dir), default=0) + 1
    if (model_dir / str(number)).exists():
        raise FileExistsError(f"{model_dir.name} already has a version {number}")
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".incoming-{number}-{os.getpid()}"
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(*ignore))
    os.replace(staging, model_dir / str(number))
    return number


def add_version_table(model_dir: Path, number: int, fields: dict[str, Any]) -> None:
    """Add `[versions.N]` to model.toml (its other lines untouched), checked as the server would read it, in one
    rename: the versions already published keep their fingerprints (the `versions` tables are not part of them),
    so nothing serving is reloaded."""
    path = model_dir / "model.toml"
    text = path.read_text(encoding="utf-8")
    if str(number) in tomllib.loads(text).get("versions", {}):
        raise ManifestError(f"model.toml already has [versions.{number}]")
    lines = [f"[versions.{number}]"] + [f"{k} = {_toml(v)}" for k, v in fields.items()]
    new = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    tmp = model_dir / f".incoming-model.toml-{os.getpid()}"
    tmp.write_text(new, encoding="utf-8")
    try:
        load_manifest(tmp)
    except ManifestError:
        tmp.unlink()
        raise
    os.replace(tmp, path)


def write_held_back(model_dir: Path, versions: tuple[int, ...]) -> None:
    """Persist the versions a rollback holds back (none: the file is removed)."""
    path = model_dir / ROLLBACK_FILE
    if versions:
        write_atomic(path, json.dumps({"held_back": sorted(versions)}) + "\n")
    else:
        path.unlink(missing_ok=True)


__all__ = ["add_version_table", "next_version", "publish_version", "version_numbers", "write_atomic",
           "write_held_back"]
