"""Changing the model repository from outside the server, atomically: checking model directories as the server
would; a version directory copied beside its final place and renamed into it; a changed file (model.toml,
rollback.json) written beside itself and renamed over it. A running service never sees anything half-written
(`ml-service models validate|add|import|train`, rollbacks)."""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ml_service.errors import ManifestError
from ml_service.manifest import load_manifest
from ml_service.repository import ROLLBACK_FILE
from ml_service.settings import Settings

#: a version's own `[versions.N]` fields, kept inside its directory (what `models train` writes)
VERSION_FILE = "version.toml"


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


def copy_version(model_dir: Path, source: Path, number: int | None = None, ignore: tuple[str, ...] = ()) -> int:
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


def write_version_file(version_dir: Path, fields: dict[str, Any]) -> None:
    """Keep a version's own `[versions.N]` fields inside it (`version.toml`), so that the directory alone can be
    published again, to this repository or another one (`models add`)."""
    (version_dir / VERSION_FILE).write_text("".join(f"{k} = {_toml(v)}\n" for k, v in fields.items()),
                                            encoding="utf-8")


def read_version_file(version_dir: Path) -> dict[str, Any] | None:
    """The fields of a version directory's `version.toml`, None without one. Raises ManifestError when unreadable."""
    path = version_dir / VERSION_FILE
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{VERSION_FILE} is not valid TOML: {exc}") from exc


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


def replace_model(old: Path, new: Path) -> list[int]:
    """Put a rebuilt model directory `new` in the place of `old` (`make models` when a model's inputs changed),
    keeping what was published to `old` since its build: each version `new` does not have (trained by `models
    train`, imported, added) with its `[versions.N]` table, and rollback.json. Returns the versions kept. `new`
    is moved: it must be on the same filesystem as `old` for the swap to be one rename."""
    built = set(version_numbers(new))
    kept = [n for n in version_numbers(old) if n not in built]
    if kept:
        tables = tomllib.loads((old / "model.toml").read_text(encoding="utf-8")).get("versions", {})
        for n in kept:
            shutil.copytree(old / str(n), new / str(n), symlinks=True)
            if str(n) in tables:  # a built version has its directory in `new`, so a kept one has no table there
                add_version_table(new, n, tables[str(n)])
    if (old / ROLLBACK_FILE).exists():
        shutil.copy2(old / ROLLBACK_FILE, new / ROLLBACK_FILE)
    aside = old.with_name(f".replaced-{old.name}-{os.getpid()}")
    if old.exists():
        os.replace(old, aside)
    os.replace(new, old)
    shutil.rmtree(aside, ignore_errors=True)
    return kept


@dataclass
class Validation:
    """What `validate_models` found about one model: no problems is a model that serves."""

    problems: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    servable: list[int] = field(default_factory=list)


def validate_models(path: Path, settings: Settings | None = None, load: bool = True,
                    every_version: bool = False) -> dict[str, Validation]:
    """Each model under `path` (a model directory or a repository) checked as the server checks it: manifest,
    files, aliases, then a real load of each servable version (`every_version`: of each version) with its warm-up
    and label checks. No entry: no model directory there."""
    from ml_service.loading import LoadFailure, describe_failure
    from ml_service.registry import ModelRegistry
    from ml_service.repository import ModelRepository

    root, only = (path.parent, path.name) if (path / "model.toml").exists() else (path, None)
    repo = ModelRepository(root)
    entries = {n: e for n, e in repo.scan().items() if only is None or n == only}
    base = settings or Settings()
    registry = ModelRegistry(base.model_copy(update={"model_cache_dir": root, "compute_workers": 1}))
    report: dict[str, Validation] = {}
    for name, e in entries.items():
        problems = [e.error] if e.error else []
        problems += [e.manifest_error] if e.manifest_error else []
        problems += [f"alias {a!r} is already claimed by model {repo.canonical_name(a)!r}" for a in e.alias_conflicts]
        if every_version:
            problems += [f"version {v}: {mv.error}" for v, mv in sorted(e.versions.items()) if mv.error]
        if e.valid and load:
            for v in sorted(e.versions) if every_version else e.candidates:
                if e.versions[v].error:
                    continue
                try:
                    registry.check(e, e.versions[v])
                except LoadFailure as exc:
                    detail = f" ({describe_failure(exc.__cause__)})" if exc.__cause__ else ""
                    problems.append(f"version {v} does not load: {exc.reason}{detail}")
                except Exception as exc:
                    problems.append(f"version {v} does not load: {describe_failure(exc)}")
        report[name] = Validation(problems, sorted(e.versions), list(e.candidates))
    return report


def publish_version(root: Path, name: str, path: Path, version: int | None = None) -> int:
    """Publish `path` (a version directory, or a model directory with model.toml and `1/`) as version `version`
    (default: the highest + 1) of `root/name`; returns the number. The files are copied beside their final place,
    then renamed into it, so a running service never sees a half-written version; a new model gets the source's
    model.toml and labels.txt first, a version with a `version.toml` (a trained head) its `[versions.N]` table.
    Raises FileExistsError when the version exists, NotADirectoryError when `path` is not a directory,
    ManifestError when its version.toml does not fit the model."""
    target = root / name
    model_dir = (path / "model.toml").exists()
    source = path / "1" if model_dir and (path / "1").is_dir() else path
    if not source.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    number = version or next_version(target)
    if number in version_numbers(target):
        raise FileExistsError(f"{name} already has a version {number}")
    target.mkdir(parents=True, exist_ok=True)
    if model_dir and not (target / "model.toml").exists():  # a new model: its files too
        for extra in ("model.toml", "labels.txt"):
            if (path / extra).exists():
                shutil.copy2(path / extra, target / f".incoming-{extra}")
                os.replace(target / f".incoming-{extra}", target / extra)
    # a model directory given as the version itself: its model-level files stay out of the version
    flat = ("model.toml", "labels.txt", ".build.json") if (source / "model.toml").exists() else ()
    fields = read_version_file(source)
    if fields and (target / "model.toml").exists():  # the table first: one for a version not on disk changes nothing
        add_version_table(target, number, fields)
    return copy_version(target, source, number, ignore=flat)


__all__ = ["VERSION_FILE", "Validation", "add_version_table", "copy_version", "next_version", "publish_version",
           "read_version_file", "replace_model", "validate_models", "version_numbers", "write_atomic",
           "write_held_back", "write_version_file"]
