"""The registry's memory budget: LRU eviction of idle models only when it makes a load fit, never a model in use,
waiting for memory within the deadline, refusing what can never fit."""

from __future__ import annotations

import asyncio

import pytest

from ml_service.errors import ModelUnavailable
from ml_service.memory import estimate_bytes

from .registry_support import MB, make_registry, rows, run, sparse


def test_lru_eviction_under_the_memory_budget(repo_root, make_model, fake_manifest, settings_for):
    for name in ("a", "b", "c"):
        mdir = make_model(repo_root, name, fake_manifest())
        sparse(mdir / "1" / "weights.bin", 100 * MB)
    # each model is estimated at ~146 MB: two fit in 365 MB, three do not
    reg = make_registry(repo_root, settings_for, memory_budget_mb=365)
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

    run(reg, scenario)


def test_concurrent_loads_of_different_models_stay_within_the_budget(repo_root, make_model, fake_manifest,
                                                                      settings_for):
    for name in ("a", "b", "c"):
        mdir = make_model(repo_root, name, fake_manifest(load_delay_ms=100))
        sparse(mdir / "1" / "weights.bin", 100 * MB)
    reg = make_registry(repo_root, settings_for, memory_budget_mb=365)  # room for two

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

    run(reg, scenario)


def test_models_with_requests_in_flight_are_never_evicted(repo_root, make_model, fake_manifest, settings_for):
    for name in ("a", "b", "c"):
        mdir = make_model(repo_root, name, fake_manifest())
        sparse(mdir / "1" / "weights.bin", 100 * MB)
    reg = make_registry(repo_root, settings_for, memory_budget_mb=365)

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

    run(reg, scenario)


def test_models_with_queued_items_are_never_evicted(repo_root, make_model, fake_manifest, settings_for):
    mdir = make_model(repo_root, "busy", fake_manifest(delay_ms=400))
    sparse(mdir / "1" / "weights.bin", 100 * MB)
    mdir = make_model(repo_root, "other", fake_manifest())
    sparse(mdir / "1" / "weights.bin", 100 * MB)
    reg = make_registry(repo_root, settings_for, memory_budget_mb=200)

    async def scenario():
        busy = await reg.get("busy")
        futures = busy.batcher.submit(rows(1), 10.0)
        with pytest.raises(ModelUnavailable):
            await reg.get("other")
        assert [m.name for m in reg.loaded] == ["busy"]
        result = await asyncio.gather(*futures)
        assert float(result[0].outputs["output"][0]) == 4.0
        await reg.get("other")  # now idle: evicted
        assert [m.name for m in reg.loaded] == ["other"]

    run(reg, scenario)


def test_a_model_over_the_whole_budget_is_refused(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest())
    reg = make_registry(repo_root, settings_for, memory_budget_mb=1)

    async def scenario():
        with pytest.raises(ModelUnavailable, match="more than the whole memory budget") as info:
            await reg.get("m")
        assert info.value.headers == {"Retry-After": "1"}
        assert reg.state("m", 1)[0] == "unloaded"  # a budget problem, not a broken model
        assert reg.loaded == []
        assert reg.loads == []

    run(reg, scenario)


def test_nothing_is_evicted_for_a_load_that_would_not_fit_anyway(repo_root, make_model, fake_manifest, settings_for):
    """Issue 9: with a busy model holding most of the budget, evicting an idle one cannot make room for a big
    load: the idle one stays, and the load is refused (503, not failed)."""
    for name, size in (("busy", 200), ("idle", 40), ("big", 150)):
        mdir = make_model(repo_root, name, fake_manifest())
        sparse(mdir / "1" / "weights.bin", size * MB)
    reg = make_registry(repo_root, settings_for, memory_budget_mb=360)  # estimates: 276 + 68 fit, + 211 never

    async def scenario():
        async with reg.use_name("busy"):
            await reg.get("idle")
            with pytest.raises(ModelUnavailable, match="not enough memory budget"):
                await reg.get("big")
            assert sorted(m.name for m in reg.loaded) == ["busy", "idle"]  # nothing evicted for nothing
            assert reg.state("big", 1)[0] == "unloaded" and reg.evictions("idle", 1) == 0

    run(reg, scenario)


def test_a_model_used_moments_ago_is_not_evicted(repo_root, make_model, fake_manifest, settings_for):
    """The anti-thrash rule: a model used within eviction_idle_s stays; a load that needs its room waits for it
    to go idle (bounded by the deadline) instead of evicting it, and evicts it once it has."""
    import time

    for name in ("a", "b"):
        mdir = make_model(repo_root, name, fake_manifest())
        sparse(mdir / "1" / "weights.bin", 100 * MB)
    reg = make_registry(repo_root, settings_for, memory_budget_mb=200, eviction_idle_s=0.5)

    async def scenario():
        await reg.get("a")
        with pytest.raises(ModelUnavailable, match="retry later"):  # no deadline: refused at once
            await reg.get("b")
        assert [m.name for m in reg.loaded] == ["a"]
        t0 = time.monotonic()
        await reg.get("b", deadline=time.monotonic() + 5)  # waits until a has been idle for 0.5 s
        assert 0.3 < time.monotonic() - t0 < 3
        assert [m.name for m in reg.loaded] == ["b"] and reg.evictions("a", 1) == 1

    run(reg, scenario)

