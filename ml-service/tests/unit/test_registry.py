"""The registry: lazy loading (once), failed loads remembered per fingerprint, republished versions swapped in
only once they work, unloads that drain (the memory budget: test_memory_budget.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ml_service.errors import ModelFailed, ModelUnavailable

from .registry_support import make_registry, rows, run


def test_models_load_lazily(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest())
    reg = make_registry(repo_root, settings_for)

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

    run(reg, scenario)


def test_concurrent_first_requests_load_exactly_once(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "slow", {**fake_manifest(load_delay_ms=200), "aliases": ["s"]})
    reg = make_registry(repo_root, settings_for)

    async def scenario():
        models = await asyncio.gather(*(reg.get("slow" if i % 2 else "s") for i in range(12)),
                                      reg.load_name("slow"), reg.load_name("slow", 1))
        assert reg.loads == [("slow", 1)]
        assert all(m is models[0] for m in models)
        assert reg.state("slow", 1)[0] == "ready"

    run(reg, scenario)


def test_a_loaded_model_computes(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest())
    reg = make_registry(repo_root, settings_for)

    async def scenario():
        async with reg.use_name("m") as lease:
            model = lease.model
            assert model.in_flight == 1 and lease.post is None and lease.batcher is model.batcher
            rows = [{"x": r} for r in np.arange(8, dtype=np.float32).reshape(2, 4)]
            results = await asyncio.gather(*lease.batcher.submit(rows, 10.0))
        assert model.in_flight == 0
        assert [float(r.outputs["output"][0]) for r in results] == [6.0, 22.0]

    run(reg, scenario)


def test_failed_load_is_reported_and_does_not_affect_others(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "bad", fake_manifest(fail_load="cannot read /srv/secret/dir/weights.bin: corrupted"))
    make_model(repo_root, "good", fake_manifest())
    reg = make_registry(repo_root, settings_for)

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

    run(reg, scenario)


def test_explicit_load_with_retry_failed(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest(fail_load="not yet"))
    reg = make_registry(repo_root, settings_for)

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

    run(reg, scenario)


def test_labels_that_do_not_match_the_outputs_fail_the_load(repo_root, make_model, settings_for):
    manifest = {
        "task": "image-classification", "runtime": "fake", "file": "model.fake", "labels": "labels.txt",
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}],
    }
    make_model(repo_root, "m", manifest, labels=["cat", "dog"])
    reg = make_registry(repo_root, settings_for)

    async def scenario():
        with pytest.raises(ModelFailed, match="labels do not match the model's outputs"):
            await reg.get("m")
        assert reg.state("m", 1)[0] == "failed"

    run(reg, scenario)


def test_unload_one_version_or_all(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", {**fake_manifest(), "version_policy": "all"}, versions=(1, 2))
    reg = make_registry(repo_root, settings_for)

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

    run(reg, scenario)


def test_unload_clears_a_failed_state(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest(fail_load="boom"))
    reg = make_registry(repo_root, settings_for)

    async def scenario():
        with pytest.raises(ModelFailed):
            await reg.get("m")
        assert await reg.unload("m") == []
        assert reg.state("m", 1) == ("unloaded", None, None)

    run(reg, scenario)


def test_close_unloads_everything(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "a", fake_manifest())
    make_model(repo_root, "b", fake_manifest())
    reg = make_registry(repo_root, settings_for)

    async def scenario():
        await reg.get("a")
        await reg.get("b")
        await reg.close()
        assert reg.loaded == []
        assert reg.state("a", 1)[0] == "unloaded"

    run(reg, scenario)


def test_an_unload_waits_for_the_requests_holding_the_model(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest(delay_ms=300))
    reg = make_registry(repo_root, settings_for)

    async def scenario():
        async with reg.use_name("m") as lease:
            futures = lease.batcher.submit(rows(2), 10.0)
            unloading = asyncio.create_task(reg.unload("m"))
            await asyncio.sleep(0.05)
            assert reg.state("m", 1)[0] == "unloading" and not unloading.done()
            results = await asyncio.gather(*futures)  # the held request is answered, not failed
        assert [float(r.outputs["output"][0]) for r in results] == [4.0, 4.0]
        assert await unloading == [1]
        assert reg.state("m", 1)[0] == "unloaded"

    run(reg, scenario)


def test_republished_files_are_swapped_in_only_once_they_work(repo_root, make_model, fake_manifest, settings_for):
    """Issue 18.9-10: a loaded version whose files change is a new publication. The new instance loads beside the
    old one; broken files leave the old instance serving, working ones replace it (the old one drains)."""
    mdir = make_model(repo_root, "m", fake_manifest())
    reg = make_registry(repo_root, settings_for)

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
            assert float((await lease.batcher.submit(rows(1), 10.0)[0]).outputs["output"][0]) == 4.0
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

    run(reg, scenario)


def test_a_swap_lets_the_old_instance_finish_what_it_holds(repo_root, make_model, fake_manifest, settings_for):
    make_model(repo_root, "m", fake_manifest(delay_ms=300))
    reg = make_registry(repo_root, settings_for)

    async def scenario():
        async with reg.use_name("m") as lease:
            futures = lease.batcher.submit(rows(2), 10.0)
            make_model(repo_root, "m", fake_manifest(delay_ms=1))
            reg.repository.scan()
            swap = asyncio.create_task(reg.restage(*reg.target("m")))
            await asyncio.sleep(0.1)
            assert reg.loaded_model(("m", 1)) is not lease.model and not swap.done()  # new requests: the new one
            results = await asyncio.gather(*futures)
        assert [float(r.outputs["output"][0]) for r in results] == [4.0, 4.0]
        assert await swap is True and not lease.model.runtime.loaded

    run(reg, scenario)
