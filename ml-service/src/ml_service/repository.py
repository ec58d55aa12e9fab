"""The model repository on disk: `<root>/<name>/model.toml` and `<root>/<name>/<version>/` files."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ml_service.errors import ManifestError, ModelNotFound, ModelUnavailable, VersionNotFound
from ml_service.manifest import NAME_PATTERN, Manifest, load_manifest

log = logging.getLogger(__name__)
_NAME_RE = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class ModelVersion:
    """One version directory and whether it holds what the manifest needs."""

    number: int
    path: Path
    error: str | None = None
    size_bytes: int = 0  # of its files, read once at scan time


@dataclass
class ModelEntry:
    """One model directory as found on disk: a manifest and versions, or the reason it is invalid."""

    name: str
    path: Path
    manifest: Manifest | None = None
    error: str | None = None
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    labels: list[str] | None = None
    alias_conflicts: list[str] = field(default_factory=list)  # aliases it declares that another model holds

    @property
    def valid(self) -> bool:
        return self.manifest is not None and self.error is None

    @property
    def served_versions(self) -> list[int]:
        """Versions the policy serves, ascending; only versions without errors count."""
        if self.manifest is None:
            return []
        ok = sorted(v for v, mv in self.versions.items() if mv.error is None)
        policy = self.manifest.version_policy
        if policy == "latest":
            return ok[-1:]
        if policy == "all":
            return ok
        return [v for v in ok if v in set(policy)]

    def version(self, requested: str | int | None) -> ModelVersion:
        """The version a request gets: the pinned one if served, else the highest served."""
        if not self.valid:
            raise ModelUnavailable(f"model '{self.name}' is invalid: {self.error}")
        served = self.served_versions
        if requested is None or requested == "":
            if not served:
                raise ModelUnavailable(f"model '{self.name}' has no servable version")
            return self.versions[served[-1]]
        try:
            number = int(requested)
        except (TypeError, ValueError):
            raise VersionNotFound(f"version must be a positive integer, got {requested!r}") from None
        if number not in served:
            raise VersionNotFound(
                f"model '{self.name}' has no served version {number}; served versions: {served}"
            )
        return self.versions[number]

    def file(self, version: ModelVersion, relname: str) -> Path:
        """A declared file: looked up in the version directory first, then the model directory."""
        for base in (version.path, self.path):
            p = base / relname
            if p.is_file():
                return p
        return version.path / relname


def _check_version(entry: ModelEntry, manifest: Manifest, vdir: Path) -> str | None:
    manifest = manifest.for_version(int(vdir.name))
    needed = [manifest.file]
    if manifest.preprocessing.tokenizer:
        needed.append(manifest.preprocessing.tokenizer)
    missing = [n for n in needed if not any((b / n).is_file() for b in (vdir, entry.path))]
    if missing:
        return f"missing file(s): {', '.join(missing)}"
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


def _read_labels(path: Path) -> list[str]:
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    labels = [lab for lab in labels if lab]
    if not labels:
        raise ManifestError(f"labels file {path.name} is empty")
    return labels


def scan_model_dir(path: Path) -> ModelEntry:
    """Read one model directory; never raises: problems land in `error`."""
    entry = ModelEntry(name=path.name, path=path)
    if not _NAME_RE.match(path.name):
        entry.error = "directory name is not a valid model name (letters, digits, '_', '-', '.')"
        return entry
    try:
        manifest = load_manifest(path / "model.toml")
        entry.manifest = manifest
        if manifest.labels:
            entry.labels = _read_labels(path / manifest.labels)
    except FileNotFoundError as exc:
        entry.error = f"labels file is missing: {Path(exc.filename or '').name}"
        return entry
    except ManifestError as exc:
        entry.error = str(exc)
        return entry
    for child in sorted(path.iterdir()):
        if child.is_dir() and child.name.isdigit() and int(child.name) > 0:
            n = int(child.name)
            size = sum(p.stat().st_size for p in child.rglob("*") if p.is_file())
            entry.versions[n] = ModelVersion(n, child, _check_version(entry, manifest, child), size)
    if not entry.versions:
        entry.error = "no version directories (expected <name>/1/, <name>/2/, ...)"
    elif not entry.served_versions:
        bad = "; ".join(f"v{v.number}: {v.error}" for v in entry.versions.values() if v.error)
        entry.error = f"no servable version under policy {manifest.version_policy!r}" + (
            f" ({bad})" if bad else ""
        )
    return entry


class ModelRepository:
    """Finds and validates the models under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._entries: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}

    @property
    def entries(self) -> dict[str, ModelEntry]:
        return self._entries

    def scan(self) -> dict[str, ModelEntry]:
        """Re-read the directory tree. Invalid models are logged by name with the reason."""
        entries: dict[str, ModelEntry] = {}
        if self.root.is_dir():
            for child in sorted(self.root.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    entries[child.name] = scan_model_dir(child)
        else:
            log.warning("model repository %s does not exist", self.root)
        aliases = self._claim_aliases(entries)
        for name, entry in entries.items():
            if entry.error:
                log.warning("model %s is invalid: %s", name, entry.error)
        self._entries, self._aliases = entries, aliases
        return entries

    def _claim_aliases(self, entries: dict[str, ModelEntry]) -> dict[str, str]:
        """Who holds each alias. The first claim wins: the holder from the previous scan, else the model whose
        model.toml is oldest; a later claim is refused loudly (logged, and listed on the model)."""
        claims: dict[str, list[str]] = {}
        for name, entry in entries.items():
            for alias in dict.fromkeys(entry.manifest.aliases if entry.manifest else []):
                if alias != name:
                    claims.setdefault(alias, []).append(name)
        aliases: dict[str, str] = {}
        for alias, names in claims.items():
            if alias in entries:
                holder = alias  # a model's own name is never an alias of another
            elif self._aliases.get(alias) in names:
                holder = self._aliases[alias]
            else:
                holder = min(names, key=lambda n: (_mtime(entries[n].path / "model.toml"), n))
            if holder != alias:
                aliases[alias] = holder
            for name in names:
                if name != holder:
                    entries[name].alias_conflicts.append(alias)
                    log.error("model %s: alias %r is already claimed by model %s; the claim is refused (remove "
                              "it from %s/model.toml)", name, alias, holder, name)
        return aliases

    def canonical_name(self, name_or_alias: str) -> str:
        """The model's directory name for a name or an alias."""
        if name_or_alias in self._entries:
            return name_or_alias
        if name_or_alias in self._aliases:
            return self._aliases[name_or_alias]
        known = sorted(self._entries) + sorted(self._aliases)
        raise ModelNotFound(f"unknown model {name_or_alias!r}; known models and aliases: {known}")

    def get(self, name_or_alias: str) -> ModelEntry:
        return self._entries[self.canonical_name(name_or_alias)]

    def aliases_of(self, name: str) -> list[str]:
        return sorted(a for a, n in self._aliases.items() if n == name)
