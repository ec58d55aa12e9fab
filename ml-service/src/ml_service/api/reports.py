"""What `/models`, `/health` and the V2 repository index show: the repository, the registry and the rollout seen
together. A model's state is the state of what serves it; a version that failed shows on its own row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ml_service.errors import MLServiceError
from ml_service.registry import ModelRegistry
from ml_service.repository import ModelEntry, ModelRepository
from ml_service.rollout import Rollout


@dataclass(frozen=True)
class Reports:
    """Read-only views of the model house for the API (nothing here loads or changes anything)."""

    repository: ModelRepository
    registry: ModelRegistry
    rollout: Rollout

    def encoder_of(self, entry: ModelEntry, version: int) -> str | None:
        """A head's encoder as name:version: the pinned version, else the encoder's current default."""
        mv = entry.versions[version]
        if mv.manifest is None or not mv.manifest.encoder:
            return None
        try:
            enc = self.repository.get(mv.manifest.encoder)
        except MLServiceError:
            return f"{mv.manifest.encoder}:?"
        number = mv.manifest.encoder_version or self.rollout.expected(enc)
        return f"{enc.name}:{number if number is not None else '?'}"

    def version_ready(self, name: str, version: int | None = None) -> bool:
        """Whether a request on this version (default: the model's default) would be answered without loading
        anything: loaded, and for a head its encoder too."""
        try:
            target = self.rollout.peek(name, version)
        except MLServiceError:
            return False
        if self.registry.loaded_model(target.key) is None:
            return False
        manifest = target.mv.manifest
        if manifest is None or not manifest.encoder:
            return True
        encoder = self.encoder_of(target.entry, target.mv.number)
        if encoder is None or encoder.endswith(":?"):
            return False
        enc_name, _, enc_version = encoder.rpartition(":")
        return self.registry.loaded_model((enc_name, int(enc_version))) is not None

    def versions(self, entry: ModelEntry) -> list[dict[str, Any]]:
        """One row per version on disk: state, the reason it is not available, memory and batching figures."""
        served = set(self.rollout.served(entry))
        default = self.rollout.default(entry)
        rows: list[dict[str, Any]] = []
        for v, mv in sorted(entry.versions.items()):
            state, failure, loaded = self.registry.state(entry.name, v, mv.fingerprint)
            if mv.error:
                error: str | None = mv.error
            elif failure and loaded is not None:
                error = f"its files changed and the new ones failed: {failure}; the previous files keep serving"
            else:
                error = failure
            stats = loaded.batcher.stats if loaded is not None and loaded.batcher is not None else None
            rows.append({
                "version": str(v),
                "served": v in served,
                "default": v == default,
                "state": state,
                "error": error,
                "labels": len(mv.labels) if mv.labels else None,
                "memory_mb": round(loaded.resident_bytes / 2**20, 1) if loaded else None,
                "peak_memory_mb": round(loaded.memory_bytes / 2**20, 1) if loaded else None,
                "memory_from_profile": loaded.profiled if loaded else None,
                "estimated_memory_mb": round(self.registry.estimate(entry, mv) / 2**20, 1) if mv.manifest else 0.0,
                "device": loaded.runtime.device if loaded else None,
                "encoder": self.encoder_of(entry, v),
                "batches": stats.batches if stats else None,
                "items": stats.items if stats else None,
                "mean_batch_size": stats.mean_recent_size() if stats else None,
                "cancelled_items": stats.cancelled if stats else None,
                "expired_items": stats.expired if stats else None,
                "evictions": self.registry.evictions(entry.name, v),
                "card": mv.card,
            })
        return rows

    def model_state(self, entry: ModelEntry, rows: list[dict[str, Any]]) -> tuple[str, str | None]:
        """The model's state from what serves it (its default, or the version that would go live first), and why
        it cannot serve when it cannot."""
        if not entry.valid:
            return "failed", entry.error or "invalid"
        expected = self.rollout.expected(entry)
        if expected is None:
            reasons = "; ".join(f"v{r['version']}: {r['error']}" for r in rows if r["error"])
            return "failed", f"no version works: {reasons}" if reasons else "no servable version"
        row = next(r for r in rows if r["version"] == str(expected))
        state = row["state"]
        return ("unloaded" if state == "failed" else state), None

    def models(self) -> list[dict[str, Any]]:
        """Every model in the repository with its versions, state, memory, errors and model card."""
        out = []
        for name, entry in sorted(self.repository.entries.items()):
            m = entry.manifest
            rows = self.versions(entry)
            state, error = self.model_state(entry, rows)
            held = [str(v) for v in entry.held_back]
            expected = self.rollout.expected(entry) if entry.valid else None
            labels = entry.versions[expected].labels if expected is not None else ()
            out.append({
                "name": name,
                "valid": entry.valid,
                "task": m.task if m else None,
                "runtime": m.runtime if m else None,
                "aliases": self.repository.aliases_of(name),
                "alias_conflicts": entry.alias_conflicts,
                "versions": [r["version"] for r in rows],
                "served_versions": [str(v) for v in self.rollout.served(entry)],
                "default_version": str(expected) if expected is not None else None,
                "state": state,
                "error": error,
                "manifest_error": entry.manifest_error,
                "memory_mb": round(sum(r["memory_mb"] or 0 for r in rows), 1),
                "labels": len(labels) if labels else None,
                "card": m.card.model_dump() if m else None,
                "rolled_back": held,
                "version_details": rows,
            })
        return out

    def health(self) -> dict[str, Any]:
        """`ok` when preloading succeeded and every model can serve, else `degraded` with the reasons."""
        models: dict[str, Any] = {}
        degraded = bool(self.rollout.preload_errors)
        for info in self.models():
            models[info["name"]] = {"state": info["state"], **({"error": info["error"]} if info["error"] else {}),
                                    **({"manifest_error": info["manifest_error"]} if info["manifest_error"] else {})}
            if info["state"] == "failed":
                degraded = True
        out: dict[str, Any] = {"status": "degraded" if degraded else "ok", "ready": self.rollout.ready,
                               "models": models}
        if self.rollout.preload_errors:
            out["preload_errors"] = dict(self.rollout.preload_errors)
        return out

    def version_rows(self) -> list[dict[str, Any]]:
        """One row per model version on disk (an invalid model: one row without a version), with the reason a
        version is not available (the V2 repository index)."""
        rows: list[dict[str, Any]] = []
        for name, entry in sorted(self.repository.entries.items()):
            if not entry.valid:
                rows.append({"name": name, "version": None, "served": False, "state": "failed",
                             "reason": entry.error or "invalid"})
                continue
            for r in self.versions(entry):
                if r["error"]:
                    reason = r["error"]
                elif not r["served"]:
                    reason = "not served under the version policy"
                else:
                    reason = "" if r["state"] in ("ready", "loading") else "unloaded"
                rows.append({"name": name, "version": int(r["version"]), "served": r["served"], "state": r["state"],
                             "reason": reason})
        return rows


__all__ = ["Reports"]
