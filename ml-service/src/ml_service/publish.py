"""Changing the model repository from outside the server: checking model directories as the server would, and
publishing a version atomically (`ml-service models validate|add|import`)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ml_service.settings import Settings


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


def existing_versions(model_dir: Path) -> list[int]:
    """The version numbers a model directory holds (directories named by a number)."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def publish_version(root: Path, name: str, path: Path, version: int | None = None) -> int:
    """Publish `path` (a version directory, or a model directory with model.toml and `1/`) as version `version`
    (default: the highest + 1) of `root/name`; returns the number. The files are copied beside their final place,
    then renamed into it, so a running service never sees a half-written version; a new model gets the source's
    model.toml and labels.txt first. Raises FileExistsError when the version exists, NotADirectoryError when
    `path` is not a directory."""
    target = root / name
    model_dir = (path / "model.toml").exists()
    source = path / "1" if model_dir and (path / "1").is_dir() else path
    if not source.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    number = version or max(existing_versions(target), default=0) + 1
    if number in existing_versions(target):
        raise FileExistsError(f"{name} already has a version {number}")
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".incoming-{number}-{os.getpid()}"
    # a model directory given as the version itself: its model-level files stay out of the version
    model_level = shutil.ignore_patterns("model.toml", "labels.txt", ".build.json")
    shutil.copytree(source, staging, ignore=lambda d, names: (
        model_level(d, names) if Path(d) == source and (source / "model.toml").exists() else set()))
    if model_dir and not (target / "model.toml").exists():  # a new model: its files too
        for extra in ("model.toml", "labels.txt"):
            if (path / extra).exists():
                shutil.copy2(path / extra, target / f".incoming-{extra}")
                os.replace(target / f".incoming-{extra}", target / extra)
    os.replace(staging, target / str(number))
    return number
