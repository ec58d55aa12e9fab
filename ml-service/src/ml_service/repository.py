"""The model repository on disk: `<root>/<name>/model.toml` and `<root>/<name>/<version>/` files.

What is on disk only: which models and versions exist, what each version holds (its manifest with overrides, its
labels, its files) and a fingerprint that changes whenever any of that changes. Which version serves is the
rollout's business (rollout.py), what is loaded the registry's (registry.py).

A model.toml that stops parsing while the model has a good one keeps the last good manifest in force: the model
goes on serving, and the error is reported on the entry (`manifest_error`) and logged once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ml_service.errors import ManifestError, ModelNotFound
from ml_service.manifest import NAME_PATTERN, Manifest, load_manifest

log = logging.getLogger(__name__)
_NAME_RE = re.compile(NAME_PATTERN)
#: manifest fields that change nothing a loaded version computes: changing them reloads nothing
_NOT_LOADED = {"card", "aliases", "version_policy", "versions"}
#: in a model directory: the versions a rollback holds back from being the default (rollout.py), {"held_back": [3]}
ROLLBACK_FILE = "rollback.json"
#: in a version directory: its model card as JSON (e.g. the report of the training that made it), shown on /models
CARD_FILE = "card.json"


@dataclass(frozen=True)
class ModelVersion:
    """One version directory: what it holds, what is wrong with it on disk (`error`), and its fingerprint."""

    number: int
    path: Path
    error: str | None = None
    size_bytes: int = 0  # of its files, read at scan time
    fingerprint: str = ""  # of its files, the model-level files it uses and its manifest; a change = a new publication
    labels: tuple[str, ...] = ()
    manifest: Manifest | None = None  # the model's manifest with this version's overrides
    card: dict[str, Any] = field(default_factory=dict)  # [versions.N] card, plus card.json as `report`


@dataclass
class ModelEntry:
    """One model directory as found on disk: a manifest and versions, or the reason it is invalid."""

    name: str
    path: Path
    manifest: Manifest | None = None
    error: str | None = None  # the model cannot serve at all (no manifest, no version)
    manifest_error: str | None = None  # model.toml is broken now; the last good manifest is in force
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    alias_conflicts: list[str] = field(default_factory=list)  # aliases it declares that another model holds
    manifest_text: str = ""  # the model.toml that is in force
    held_back: tuple[int, ...] = ()  # rolled back: never the default until a newer version goes live

    @property
    def valid(self) -> bool:
        return self.manifest is not None and self.error is None

    @cached_property
    def candidates(self) -> tuple[int, ...]:
        """Versions the version policy allows and that hold what they need, ascending (read once the scan is
        done). Which of them serves is the rollout's choice: the newest that loads and passes its warm-up."""
        if self.manifest is None:
            return ()
        ok = sorted(v for v, mv in self.versions.items() if mv.error is None)
        policy = self.manifest.version_policy
        if isinstance(policy, list):
            return tuple(v for v in ok if v in set(policy))
        return tuple(ok)

    def file(self, version: ModelVersion, relname: str) -> Path:
        """A declared file: looked up in the version directory first, then the model directory."""
        for base in (version.path, self.path):
            p = base / relname
            if p.is_file():
                return p
        return version.path / relname


def _stat_key(path: Path, rel: str) -> tuple[str, int]:
    """A file's identity for the fingerprint, and its size."""
    try:
        st = path.stat()
    except OSError:
        return f"{rel}:missing", 0
    # ctime and inode change on every rewrite or rename into place, even when size and mtime are kept
    return f"{rel}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}", st.st_size


def _read_labels(path: Path) -> tuple[str, ...]:
    labels = tuple(lab for lab in (line.strip() for line in path.read_text(encoding="utf-8").splitlines()) if lab)
    if not labels:
        raise ManifestError(f"labels file {path.name} is empty")
    return labels


def scan_version(entry: ModelEntry, manifest: Manifest, vdir: Path) -> ModelVersion:
    """One version directory with the model's manifest: its files, labels, fingerprint, and what is missing."""
    number = int(vdir.name)
    mv = manifest.for_version(number)
    files = sorted(p for p in vdir.rglob("*") if p.is_file())
    size = 0
    keys = [mv.model_dump_json(exclude=_NOT_LOADED)]
    for p in files:
        key, n = _stat_key(p, str(p.relative_to(vdir)))
        keys.append(key)
        size += n
    error: str | None = None
    needed = [mv.file, *([mv.preprocessing.tokenizer] if mv.preprocessing.tokenizer else [])]
    for name in needed + ([mv.labels] if mv.labels else []):
        if not (vdir / name).is_file() and (entry.path / name).is_file():
            keys.append("model-dir/" + _stat_key(entry.path / name, name)[0])  # a shared file this version uses
    missing = [n for n in needed if not any((b / n).is_file() for b in (vdir, entry.path))]
    if missing:
        error = f"missing file(s): {', '.join(missing)}"
    labels: tuple[str, ...] = ()
    if mv.labels and error is None:
        where = vdir / mv.labels if (vdir / mv.labels).is_file() else entry.path / mv.labels
        try:
            labels = _read_labels(where)
        except FileNotFoundError:
            error = f"labels file is missing: {mv.labels}"
        except (ManifestError, UnicodeDecodeError, OSError) as exc:
            error = f"labels file unreadable: {exc}"
    digest = hashlib.blake2b("\n".join(keys).encode(), digest_size=12).hexdigest()
    return ModelVersion(number, vdir, error, size, digest, labels, mv, _card(manifest, vdir))


def _card(manifest: Manifest, vdir: Path) -> dict[str, Any]:
    """A version's own card: its `[versions.N] card` table, and its card.json (unreadable: left out, logged)."""
    override = manifest.versions.get(vdir.name)
    card: dict[str, Any] = dict(override.card) if override is not None else {}
    path = vdir / CARD_FILE
    if path.is_file():
        try:
            card["report"] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("%s is not readable JSON: %s", path, exc)
    return card


def read_held_back(model_dir: Path) -> tuple[int, ...]:
    """The versions a rollback holds back, from the model directory's rollback.json (none when absent or bad)."""
    try:
        data = json.loads((model_dir / ROLLBACK_FILE).read_text(encoding="utf-8"))
        return tuple(sorted({int(v) for v in data["held_back"] if int(v) > 0}))
    except FileNotFoundError:
        return ()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.error("%s is unreadable (%s): no version is held back", model_dir / ROLLBACK_FILE, exc)
        return ()


def scan_model_dir(path: Path, previous: ModelEntry | None = None) -> ModelEntry:
    """Read one model directory; never raises: problems land in `error` (or, while a last good manifest from
    `previous` is in force, in `manifest_error`)."""
    entry = ModelEntry(name=path.name, path=path)
    if not _NAME_RE.match(path.name):
        entry.error = "directory name is not a valid model name (letters, digits, '_', '-', '.')"
        return entry
    try:
        text = (path / "model.toml").read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        text = f"\x00unreadable: {exc}"
    manifest: Manifest | None = None
    if previous is not None and previous.manifest is not None and text == previous.manifest_text:
        manifest = previous.manifest  # unchanged: not parsed again
    else:
        try:
            manifest = load_manifest(path / "model.toml")
        except ManifestError as exc:
            if previous is not None and previous.manifest is not None:
                entry.manifest_error = f"{exc}; serving with the last good model.toml"
                manifest, text = previous.manifest, previous.manifest_text
            else:
                entry.error = str(exc)
                return entry
    entry.manifest, entry.manifest_text = manifest, text or ""
    entry.held_back = read_held_back(path)
    old = previous.versions if previous is not None else {}
    for child in sorted(path.iterdir()):
        if child.is_dir() and child.name.isdigit() and int(child.name) > 0:
            mv = scan_version(entry, manifest, child)
            kept = old.get(mv.number)
            # the same object while nothing changed: whatever was built from it stays valid
            entry.versions[mv.number] = kept if kept is not None and kept.fingerprint == mv.fingerprint else mv
    if not entry.versions:
        entry.error = "no version directories (expected <name>/1/, <name>/2/, ...)"
    elif not entry.candidates:
        bad = "; ".join(f"v{v.number}: {v.error}" for v in entry.versions.values() if v.error)
        entry.error = f"no servable version under policy {manifest.version_policy!r}" + (f" ({bad})" if bad else "")
    return entry


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


class ModelRepository:
    """Finds and validates the models under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._entries: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}

    @property
    def entries(self) -> dict[str, ModelEntry]:
        return self._entries

    def scan(self, only: str | None = None) -> dict[str, ModelEntry]:
        """Re-read the directory tree (or one model's directory). Problems are logged once, when they appear."""
        entries: dict[str, ModelEntry] = {}
        if only is not None:
            entries = dict(self._entries)
            entries.pop(only, None)
            path = self.root / only
            if path.is_dir() and _NAME_RE.match(only):
                entries[only] = scan_model_dir(path, self._entries.get(only))
        elif self.root.is_dir():
            for child in sorted(self.root.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    entries[child.name] = scan_model_dir(child, self._entries.get(child.name))
        else:
            log.warning("model repository %s does not exist", self.root)
        logged = {n: set(e.alias_conflicts) for n, e in self._entries.items()}
        for entry in entries.values():
            entry.alias_conflicts = []
        aliases = self._claim_aliases(entries, logged)
        for name, entry in entries.items():
            before = self._entries.get(name)
            if entry.error and (before is None or before.error != entry.error):
                log.warning("model %s is invalid: %s", name, entry.error)
            if entry.manifest_error and (before is None or before.manifest_error != entry.manifest_error):
                log.error("model %s: %s", name, entry.manifest_error)
            for v, mv in entry.versions.items():
                old = before.versions.get(v) if before is not None else None
                if mv.error and (old is None or old.error != mv.error):
                    log.warning("model %s version %d cannot be served: %s", name, v, mv.error)
        self._entries, self._aliases = entries, aliases
        return entries

    def _claim_aliases(self, entries: dict[str, ModelEntry], logged: dict[str, set[str]]) -> dict[str, str]:
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
                    if alias not in logged.get(name, ()):
                        log.error("model %s: alias %r is already claimed by model %s; the claim is refused "
                                  "(remove it from %s/model.toml)", name, alias, holder, name)
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

