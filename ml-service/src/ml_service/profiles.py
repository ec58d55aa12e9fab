"""Load profiles: what loading a version's files cost when it was measured (loading.py), kept in the repository so
that later loads of the same files under the same settings can take it instead of measuring again. Light on
imports (the runtime's base, the settings)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ml_service import __version__
from ml_service.runtime.base import Runtime, RuntimeOptions
from ml_service.settings import Settings

log = logging.getLogger(__name__)
PROFILES_FILE = ".load-profiles.json"  # in the repository's root, beside the model directories
_SETUPS_KEPT = 4  # set-ups remembered per version


def runtime_options(settings: Settings) -> RuntimeOptions:
    """What the runtimes are told, from the settings."""
    return RuntimeOptions(threads=settings.threads, device=settings.device, spinning=settings.ort_spinning,
                          arena_shrinkage=settings.release_idle_s > 0)


def profile_setup(runtime: type[Runtime], settings: Settings, options: RuntimeOptions) -> str:
    """What a load's cost depends on beside its files: this service's release, the runtime and its library, the
    device setting, the compute workers and threads, and whether working memory is given back."""
    return (f"ml-service {__version__} {runtime.name} {runtime.library_version()} device={options.device} "
            f"workers={settings.workers()} threads={options.threads} release={options.arena_shrinkage}")


@dataclass(frozen=True)
class LoadProfile:
    """What loading one version's files cost when measured: the budget figure, the resident growth, and the device
    the runtime ended up on (the setting may say `auto`)."""

    memory_bytes: int
    resident_bytes: int
    device: str


class LoadProfiles:
    """The load profiles of one repository, kept in `<root>/.load-profiles.json`: per model version, one entry per
    set-up it was measured under (runtime library, device, workers, threads; replicas with other settings may
    share the repository), each with the fingerprint of the files and their cost. A profile counts only for the
    very files and set-up it was measured with; a directory that cannot be written (a read-only mount) just means
    every load is measured."""

    def __init__(self, root: Path | None) -> None:
        self.path = root / PROFILES_FILE if root is not None else None
        self._lock = threading.Lock()
        self._data: dict[str, list[dict[str, object]]] | None = None

    def _read(self) -> dict[str, list[dict[str, object]]]:
        data: object = {}
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
        if not isinstance(data, dict):
            return {}
        return {k: [e for e in v if isinstance(e, dict)] for k, v in data.items() if isinstance(v, list)}

    def get(self, key: str, fingerprint: str, setup: str) -> LoadProfile | None:
        """The profile of these files (`key`: name:version) under this set-up, if one was measured."""
        with self._lock:
            if self._data is None:
                self._data = self._read()
            entries = self._data.get(key, [])
        p = next((e for e in entries if e.get("setup") == setup), None)
        if p is None or p.get("fingerprint") != fingerprint:
            return None
        memory, resident, device = p.get("memory_bytes"), p.get("resident_bytes"), p.get("device")
        if (not isinstance(memory, int) or not isinstance(resident, int) or memory <= 0 or resident <= 0
                or not isinstance(device, str)):
            return None
        return LoadProfile(memory, resident, device)

    def put(self, key: str, fingerprint: str, setup: str, profile: LoadProfile) -> None:
        """Remember a measured load (replacing what this set-up measured for the version before, and keeping the
        last few set-ups)."""
        entry: dict[str, object] = {"fingerprint": fingerprint, "setup": setup, "device": profile.device,
                                    "memory_bytes": profile.memory_bytes, "resident_bytes": profile.resident_bytes}
        self._update(key, setup, entry)

    def forget(self, key: str, setup: str) -> None:
        """Drop what this set-up measured for the version (it no longer holds): its next load is measured."""
        self._update(key, setup, None)

    def _update(self, key: str, setup: str, entry: dict[str, object] | None) -> None:
        """Set or drop one set-up's entry, merged into the file as it is now and written at once, atomically;
        versions gone from the repository are dropped on the way."""
        if self.path is None:
            return
        with self._lock:
            data = self._read()  # as another process may have written it since
            root = self.path.parent
            data = {k: v for k, v in data.items() if k == key or (root / "/".join(k.rsplit(":", 1))).is_dir()}
            others = [e for e in data.get(key, []) if e.get("setup") != setup]
            data[key] = [*others[-(_SETUPS_KEPT - 1):], entry] if entry is not None else others
            self._data = data
            try:
                fd, tmp = tempfile.mkstemp(prefix=PROFILES_FILE, suffix=".tmp", dir=root)
            except OSError as exc:
                log.debug("load profiles not kept (%s): every restart measures its loads", type(exc).__name__)
                return
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from replicas running as another user
                os.replace(tmp, self.path)
            except OSError as exc:
                log.debug("load profiles not kept (%s): every restart measures its loads", type(exc).__name__)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


__all__ = ["PROFILES_FILE", "LoadProfile", "LoadProfiles", "profile_setup", "runtime_options"]
