"""The registry: lazy loading (once), LRU eviction under the memory budget, failed loads, unload."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ml_service.errors import ModelFailed, ModelUnavailable
from ml_service.memory import estimate_bytes
from ml_service.registry import ModelRegistry
from ml_service.repository import ModelRepository

MB = 1024 * 1024


class CountingRegistry(ModelRegistry):
    """The real registry, counting how often it actually loads a model version; models are named here as a
    request names them (the newest version unless one is given), which the rollout does in the service."""

    def __init__(self, repository, settings):
        super().__init__(settings)
        self.repository = repository
        self.loads: list[tuple[str, int]] = []

    def _load_sync(self, entry, mv, *args, **kwargs):
        self.loads.append((entry.name, mv.number))
        return super()._load_sync(entry, mv, *args, **kwargs)

    def target(self, name, version=None):
        entry = self.repository.get(name)
        return entry, entry.versions[int(version) if version else entry.candidates[-1]]

    async def get(self, name, version=None, deadline=None):
        return await self.load(*self.target(name, version), deadline=deadline)

    async def load_name(self, name, version=None, retry_failed=False):
        return await self.load(*self.target(name, version), retry_failed=retry_failed)

    def use_name(self, name, version=None):
        return self.use(*self.target(name, version), None)


def _registry(root, settings_for, **overrides) -> CountingRegistry:
    """A registry over `root`; eviction as soon as a model is idle unless a test sets `eviction_idle_s`."""
    repo = ModelRepository(root)
    repo.scan()
    overrides.setdefault("eviction_idle_s", 0.0)
    return CountingRegistry(repo, settings_for(root, **overrides))


def _rows(n, value=1.0):
    return [{"x": np.full(4, value, dtype=np.float32)} for _ in range(n)]


def _run(registry: ModelRegistry, scenario):
    async def main():
        try:
            await scenario()
        finally:
            await registry.close()

    asyncio.run(main())


def _sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def test_models_load_lazily(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest())
    reg = _registry(repo_root, settings_for)

    async def scenario():
        assert reg.state("m", 1) == ("unloaded", None, None)
        assert reg.loaded == []
        assert reg.loads == []
        model = await reg.get("m")
        assert (model.name, model.version) == ("m", 1)
        state, error, loaded = reg.state("m", 1)
        assert (state, error, loaded) == ("ready", None, model)
        assert await reg.get("m") is model
        assert reg.loads == [("m", 1)]
        assert model.memory_bytes > 0
        assert reg.used_bytes() == model.memory_bytes

    _run(reg, scenario)


def test_concurrent_first_requests_load_exactly_once(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "slow", {**fake_manifest(load_delay_ms=200), "aliases": ["s"]})
    reg = _registry(repo_root, settings_for)

    async def scenario():
        models = await asyncio.gather(*(reg.get("slow" if i % 2 else "s") for i in range(12)),
                                      reg.load_name("slow"), reg.load_name("slow", 1))
        assert reg.loads == [("slow", 1)]
        assert all(m is models[0] for m in models)
        assert reg.state("slow", 1)[0] == "ready"

    _run(reg, scenario)


def test_a_loaded_model_computes(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest())
    reg = _registry(repo_root, settings_for)

    async def scenario():
        async with reg.use_name("m") as lease:
            model = lease.model
            assert model.in_flight == 1 and lease.post is None and lease.batcher is model.batcher
            rows = [{"x": r} for r in np.arange(8, dtype=np.float32).reshape(2, 4)]
            results = await asyncio.gather(*lease.batcher.submit(rows, 10.0))
        assert model.in_flight == 0
        assert [float(r.outputs["output"][0]) for r in results] == [6.0, 22.0]

    _run(reg, scenario)


def test_lru_eviction_under_the_memory_budget(repo_root, make_model, fake_manifest, settings_for):
    for name in ("a", "b", "c"):
        mdir = make_model(repo_root, name, fake_manifest())
        _sparse(mdir / "1" / "weights.bin", 100 * MB)
    # each model is estimated at ~146 MB: two fit in 365 MB, three do not
    reg = _registry(repo_root, settings_for, memory_budget_mb=365)
    entry = reg.repository.get("a")
    per_model = estimate_bytes(entry.versions[1].size_bytes)
    assert 2 * per_model <= reg.budget_bytes < 3 * per_model

    async def scenario():
        await reg.get("a")
        await reg.get("b")
        await asyncio.sleep(0.01)
        await reg.get("a")  # a is now more recently used than b
        await reg.get("c")
        assert sorted(m.name for m in reg.loaded) == ["a", "c"]
        assert reg.state("b", 1)[0] == "unloaded"
        assert reg.used_bytes() <= reg.budget_bytes
        await reg.get("b")  # comes back on demand, evicting a (now the least recently used)
        assert sorted(m.name for m in reg.loaded) == ["b", "c"]
        assert reg.loads == [("a", 1), ("b", 1), ("c", 1), ("b", 1)]

    _run(reg, scenario)


def test_concurrent_loads_of_different_models_stay_within_the_budget(repo_root, make_model, fake_manifest,
                                                                      settings_for):
    for name in ("a", "b", "c"):
        mdir = make_model(repo_root, name, fake_manifest(load_delay_ms=100))
        _sparse(mdir / "1" / "weights.bin", 100 * MB)
    reg = _registry(repo_root, settings_for, memory_budget_mb=365)  # room for two

    async def scenario():
        results = await asyncio.gather(*(reg.get(n) for n in ("a", "b", "c")), return_exceptions=True)
        loaded = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, ModelUnavailable) for r in refused), refused
        assert len(loaded) >= 1
        assert sorted(m.name for m in reg.loaded) == sorted(m.name for m in loaded)
        assert reg.used_bytes() <= reg.budget_bytes
        await reg.get("c")  # once the loads are done, idle models make room as usual
        assert reg.used_bytes() <= reg.budget_bytes

    _run(reg, scenario)


def test_models_with_requests_in_flight_are_never_evicted(repo_root, make_model, fake_manifest, settings_for):
    for name in ("a", "b", "c"):
        mdir = make_model(repo_root, name, fake_manifest())
        _sparse(mdir / "1" / "weights.bin", 100 * MB)
    reg = _registry(repo_root, settings_for, memory_budget_mb=365)

    async def scenario():
        async with reg.use_name("a"):  # a is the least recently used, but busy
            await reg.get("b")
            await reg.get("c")
            assert sorted(m.name for m in reg.loaded) == ["a", "c"]
            async with reg.use_name("c"):
                with pytest.raises(ModelUnavailable, match="ML_SERVICE_MEMORY_BUDGET_MB"):
                    await reg.get("b")
                assert reg.state("b", 1)[0] == "unloaded"
                assert sorted(m.name for m in reg.loaded) == ["a", "c"]
        await reg.get("b")  # nothing is busy any more: the least recently used goes
        assert len(reg.loaded) == 2

    _run(reg, scenario)


def test_models_with_queued_items_are_never_evicted(repo_root, make_model, fake_manifest, settings_for):
    mdir = make_model(repo_root, "busy", fake_manifest(delay_ms=400))
    _sparse(mdir / "1" / "weights.bin", 100 * MB)
    mdir = make_model(repo_root, "other", fake_manifest())
    _sparse(mdir / "1" / "weights.bin", 100 * MB)
    reg = _registry(repo_root, settings_for, memory_budget_mb=200)

    async def scenario():
        busy = await reg.get("busy")
        futures = busy.batcher.submit(_rows(1), 10.0)
        with pytest.raises(ModelUnavailable):
            await reg.get("other")
        assert [m.name for m in reg.loaded] == ["busy"]
        result = await asyncio.gather(*futures)
        assert float(result[0].outputs["output"][0]) == 4.0
        await reg.get("other")  # now idle: evicted
        assert [m.name for m in reg.loaded] == ["other"]

    _run(reg, scenario)


def test_a_model_over_the_whole_budget_is_refused(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest())
    reg = _registry(repo_root, settings_for, memory_budget_mb=1)

    async def scenario():
        with pytest.raises(ModelUnavailable, match="more than the whole memory budget") as info:
            await reg.get("m")
        assert info.value.headers == {"Retry-After": "1"}
        assert reg.state("m", 1)[0] == "unloaded"  # a budget problem, not a broken model
        assert reg.loaded == []
        assert reg.loads == []

    _run(reg, scenario)


def test_failed_load_is_reported_and_does_not_affect_others(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "bad", fake_manifest(fail_load="cannot read /srv/secret/dir/weights.bin: corrupted"))
    make_model(repo_root, "good", fake_manifest())
    reg = _registry(repo_root, settings_for)

    async def scenario():
        with pytest.raises(ModelFailed) as info:
            await reg.get("bad")
        assert info.value.status_code == 503 and "Retry-After" not in info.value.headers  # retrying cannot help
        assert "model file unreadable or corrupt" in info.value.message and "corrupted" not in info.value.message
        state, error, loaded = reg.state("bad", 1)
        assert state == "failed"
        assert loaded is None
        assert error == "model file unreadable or corrupt"  # a fixed reason: no text of the exception, no paths
        assert "/srv" not in info.value.message
        # a failed load is not retried by every request
        with pytest.raises(ModelFailed, match="failed to load"):
            await reg.get("bad")
        assert reg.loads == [("bad", 1)]
        good = await reg.get("good")
        assert reg.state("good", 1)[0] == "ready"
        assert reg.loaded == [good]

    _run(reg, scenario)


def test_explicit_load_with_retry_failed(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest(fail_load="not yet"))
    reg = _registry(repo_root, settings_for)

    async def scenario():
        with pytest.raises(ModelFailed):
            await reg.load_name("m")
        with pytest.raises(ModelFailed, match="unreadable or corrupt"):
            await reg.load_name("m")  # the same files: the failure sticks, nothing is tried
        assert reg.loads == [("m", 1)]
        with pytest.raises(ModelFailed):
            await reg.load_name("m", retry_failed=True)  # still broken: tried again, fails again
        assert reg.loads == [("m", 1), ("m", 1)]
        make_model(repo_root, "m", fake_manifest())  # fixed on disk: new files are tried without being asked
        reg.repository.scan()
        model = await reg.load_name("m")
        assert reg.state("m", 1) == ("ready", None, model)
        assert len(reg.loads) == 3

    _run(reg, scenario)


def test_labels_that_do_not_match_the_outputs_fail_the_load(repo_root, make_model, settings_for):
    manifest = {
        "task": "image-classification", "runtime": "fake", "file": "model.fake", "labels": "labels.txt",
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}],
    }
    make_model(repo_root, "m", manifest, labels=["cat", "dog"])
    reg = _registry(repo_root, settings_for)

    async def scenario():
        with pytest.raises(ModelFailed, match="labels do not match the model's outputs"):
            await reg.get("m")
        assert reg.state("m", 1)[0] == "failed"

    _run(reg, scenario)


def test_unload_one_version_or_all(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", {**fake_manifest(), "version_policy": "all"}, versions=(1, 2))
    reg = _registry(repo_root, settings_for)

    async def scenario():
        v1 = await reg.get("m", 1)
        await reg.get("m", "2")
        assert sorted(m.version for m in reg.loaded) == [1, 2]
        assert await reg.unload("m", 1) == [1]
        assert reg.state("m", 1)[0] == "unloaded"
        assert reg.state("m", 2)[0] == "ready"
        with pytest.raises(ModelUnavailable):  # its batcher is stopped
            v1.batcher.submit([{"x": np.zeros(4, dtype=np.float32)}], 1.0)
        assert await reg.unload("m", 1) == []
        await reg.get("m", 1)
        assert sorted(await reg.unload("m")) == [1, 2]
        assert reg.loaded == []
        assert reg.loads == [("m", 1), ("m", 2), ("m", 1)]

    _run(reg, scenario)


def test_unload_clears_a_failed_state(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest(fail_load="boom"))
    reg = _registry(repo_root, settings_for)

    async def scenario():
        with pytest.raises(ModelFailed):
            await reg.get("m")
        assert await reg.unload("m") == []
        assert reg.state("m", 1) == ("unloaded", None, None)

    _run(reg, scenario)


def test_close_unloads_everything(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "a", fake_manifest())
    make_model(repo_root, "b", fake_manifest())
    reg = _registry(repo_root, settings_for)

    async def scenario():
        await reg.get("a")
        await reg.get("b")
        await reg.close()
        assert reg.loaded == []
        assert reg.state("a", 1)[0] == "unloaded"

    _run(reg, scenario)


def test_nothing_is_evicted_for_a_load_that_would_not_fit_anyway(repo_root, make_model, fake_manifest, settings_for):
    """Issue 9: with a busy model holding most of the budget, evicting an idle one cannot make room for a big
    load: the idle one stays, and the load is refused (503, not failed)."""
    for name, size in (("busy", 200), ("idle", 40), ("big", 150)):
        mdir = make_model(repo_root, name, fake_manifest())
        _sparse(mdir / "1" / "weights.bin", size * MB)
    reg = _registry(repo_root, settings_for, memory_budget_mb=360)  # estimates: 276 + 68 fit, + 211 never

    async def scenario():
        async with reg.use_name("busy"):
            await reg.get("idle")
            with pytest.raises(ModelUnavailable, match="not enough memory budget"):
                await reg.get("big")
            assert sorted(m.name for m in reg.loaded) == ["busy", "idle"]  # nothing evicted for nothing
            assert reg.state("big", 1)[0] == "unloaded" and reg.evictions("idle", 1) == 0

    _run(reg, scenario)


def test_a_model_used_moments_ago_is_not_evicted(repo_root, make_model, fake_manifest, settings_for):
    """The anti-thrash rule: a model used within eviction_idle_s stays; a load that needs its room waits for it
    to go idle (bounded by the deadline) instead of evicting it, and evicts it once it has."""
    import time

    for name in ("a", "b"):
        mdir = make_model(repo_root, name, fake_manifest())
        _sparse(mdir / "1" / "weights.bin", 100 * MB)
    reg = _registry(repo_root, settings_for, memory_budget_mb=200, eviction_idle_s=0.5)

    async def scenario():
        await reg.get("a")
        with pytest.raises(ModelUnavailable, match="retry later"):  # no deadline: refused at once
            await reg.get("b")
        assert [m.name for m in reg.loaded] == ["a"]
        t0 = time.monotonic()
        await reg.get("b", deadline=time.monotonic() + 5)  # waits until a has been idle for 0.5 s
        assert 0.3 < time.monotonic() - t0 < 3
        assert [m.name for m in reg.loaded] == ["b"] and reg.evictions("a", 1) == 1

    _run(reg, scenario)


def test_an_unload_waits_for_the_requests_holding_the_model(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest(delay_ms=300))
    reg = _registry(repo_root, settings_for)

    async def scenario():
        async with reg.use_name("m") as lease:
            futures = lease.batcher.submit(_rows(2), 10.0)
            unloading = asyncio.create_task(reg.unload("m"))
            await asyncio.sleep(0.05)
            assert reg.state("m", 1)[0] == "unloading" and not unloading.done()
            results = await asyncio.gather(*futures)  # the held request is answered, not failed
        assert [float(r.outputs["output"][0]) for r in results] == [4.0, 4.0]
        assert await unloading == [1]
        assert reg.state("m", 1)[0] == "unloaded"

    _run(reg, scenario)


def test_republished_files_are_swapped_in_only_once_they_work(repo_root, make_model, fake_manifest, settings_for):
    """Issue 18.9-10: a loaded version whose files change is a new publication. The new instance loads beside the
    old one; broken files leave the old instance serving, working ones replace it (the old one drains)."""
    mdir = make_model(repo_root, "m", fake_manifest())
    reg = _registry(repo_root, settings_for)

    async def scenario():
        old = await reg.get("m")
        make_model(repo_root, "m", fake_manifest(fail_load="truncated"))  # republished, broken
        entry, mv = reg.target("m")
        reg.repository.scan()
        entry, mv = reg.target("m")
        assert mv.fingerprint != old.mv.fingerprint
        with pytest.raises(ModelFailed, match="unreadable or corrupt"):
            await reg.restage(entry, mv)
        state, error, serving = reg.state("m", 1, mv.fingerprint)
        assert (state, serving) == ("ready", old) and error == "model file unreadable or corrupt"
        async with reg.use_name("m") as lease:  # requests still get the old instance
            assert lease.model is old
            assert float((await lease.batcher.submit(_rows(1), 10.0)[0]).outputs["output"][0]) == 4.0
        with pytest.raises(ModelFailed, match="tried again once its files change"):
            await reg.restage(entry, mv)  # the same broken files are not tried again
        assert reg.loads == [("m", 1), ("m", 1)]
        make_model(repo_root, "m", fake_manifest(delay_ms=1))  # republished again, working
        reg.repository.scan()
        entry, mv = reg.target("m")
        assert await reg.restage(entry, mv) is True
        new = reg.loaded_model(("m", 1))
        assert new is not old and new.mv is mv and not old.runtime.loaded and reg.loaded == [new]
        assert await reg.restage(entry, mv) is False  # nothing changed since
        assert mdir.is_dir()

    _run(reg, scenario)


def test_a_swap_lets_the_old_instance_finish_what_it_holds(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest(delay_ms=300))
    reg = _registry(repo_root, settings_for)

    async def scenario():
        async with reg.use_name("m") as lease:
            futures = lease.batcher.submit(_rows(2), 10.0)
            make_model(repo_root, "m", fake_manifest(delay_ms=1))
            reg.repository.scan()
            swap = asyncio.create_task(reg.restage(*reg.target("m")))
            await asyncio.sleep(0.1)
            assert reg.loaded_model(("m", 1)) is not lease.model and not swap.done()  # new requests: the new one
            results = await asyncio.gather(*futures)
        assert [float(r.outputs["output"][0]) for r in results] == [4.0, 4.0]
        assert await swap is True and not lease.model.runtime.loaded

    _run(reg, scenario)
