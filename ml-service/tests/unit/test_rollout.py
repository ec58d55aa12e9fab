"""The one version policy (rollout.py) with the real repository and registry on the fake runtime: a version becomes
the default only after it loaded and passed its warm-up; nothing that failed takes traffic, at start or later."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from ml_service.errors import ModelFailed, VersionNotFound
from ml_service.registry import ModelRegistry
from ml_service.repository import ModelRepository
from ml_service.rollout import Rollout


def _rollout(root, settings_for, **overrides) -> Rollout:
    settings = settings_for(root, eviction_idle_s=0.0, **overrides)
    repo = ModelRepository(root)
    repo.scan()
    return Rollout(repo, ModelRegistry(settings), settings)


def _run(rollout: Rollout, scenario) -> None:
    async def main():
        try:
            await scenario()
        finally:
            await rollout.registry.close()

    asyncio.run(main())


def _model(make_model, fake_manifest, root, policy="latest", versions=(1,), **fake):
    return make_model(root, "m", {**fake_manifest(**fake), "version_policy": policy}, versions=versions)


def _corrupt(mdir, version: int) -> None:
    (mdir / str(version)).mkdir(exist_ok=True)
    (mdir / str(version) / "model.fake").write_bytes(b"corrupt: truncated")


def _publish(mdir, version: int, source: int = 1) -> None:
    """Publish a copy of a version atomically (as `ml-service models add` does)."""
    staging = mdir / f".incoming-{version}"
    shutil.copytree(mdir / str(source), staging)
    staging.rename(mdir / str(version))


async def _default(r: Rollout) -> int:
    return (await r.resolve("m")).mv.number


@pytest.mark.parametrize("policy", ["latest", "all"])
def test_a_broken_new_version_never_becomes_the_default(repo_root, make_model, fake_manifest, settings_for, policy):
    """Issue 18.7: with `latest`, a truncated ONNX published with `models add` became the default at once."""
    mdir = _model(make_model, fake_manifest, repo_root, policy)
    r = _rollout(repo_root, settings_for)

    async def scenario():
        assert await _default(r) == 1
        _corrupt(mdir, 2)
        report = await r.reload()
        assert "m:2" in report["failed"] and report["switched"] == {}
        assert await _default(r) == 1 and r.default(r.repository.get("m")) == 1
        for _ in range(3):  # every later re-read leaves it alone (the same files are not tried again)
            assert (await r.reload())["failed"] == {}
        _publish(mdir, 3)  # a working one goes live
        assert (await r.reload())["switched"] == {"m": [1, 3]}
        assert await _default(r) == 3

    _run(r, scenario)


def test_removing_the_default_under_all_falls_back_to_the_newest_working_version(repo_root, make_model,
                                                                                  fake_manifest, settings_for):
    """Issue 18.7: with `all`, removing the live version made a failed one the default."""
    mdir = _model(make_model, fake_manifest, repo_root, "all", versions=(1, 2))
    r = _rollout(repo_root, settings_for)

    async def scenario():
        assert await _default(r) == 2
        _corrupt(mdir, 3)
        await r.reload()
        shutil.rmtree(mdir / "2")
        report = await r.reload()
        assert "m:2" in report["unloaded"]
        assert await _default(r) == 1  # not the broken 3
        pinned = await r.resolve("m", 3)  # it exists, so it resolves; but it failed: 503 without Retry-After
        with pytest.raises(ModelFailed) as info:
            async with r.registry.use(pinned.entry, pinned.mv, None):
                pass
        assert info.value.status_code == 503 and "Retry-After" not in info.value.headers
        with pytest.raises(VersionNotFound):
            await r.resolve("m", 2)

    _run(r, scenario)


def test_at_start_the_newest_working_version_goes_live(repo_root, make_model, fake_manifest, settings_for):
    mdir = _model(make_model, fake_manifest, repo_root, "latest", versions=(1, 2))
    _corrupt(mdir, 3)
    _corrupt(mdir, 4)
    r = _rollout(repo_root, settings_for)

    async def scenario():
        await r.preload(["m"])
        assert r.ready and r.default(r.repository.get("m")) == 2
        assert sorted((m.name, m.version) for m in r.registry.loaded) == [("m", 2)]
        assert r.served(r.repository.get("m")) == [2]
        with pytest.raises(VersionNotFound):  # under latest only the default is served
            await r.resolve("m", 1)

    _run(r, scenario)


def test_a_lazy_model_goes_live_on_its_first_request_skipping_broken_versions(repo_root, make_model, fake_manifest,
                                                                              settings_for):
    mdir = _model(make_model, fake_manifest, repo_root, "all", versions=(1,))
    _corrupt(mdir, 2)
    r = _rollout(repo_root, settings_for)

    async def scenario():
        assert r.expected(r.repository.get("m")) == 2  # not tried yet
        assert await _default(r) == 1
        assert r.expected(r.repository.get("m")) == 1 and r.served(r.repository.get("m")) == [1]

    _run(r, scenario)


def test_no_working_version_is_a_model_failure(repo_root, make_model, fake_manifest, settings_for):
    mdir = _model(make_model, fake_manifest, repo_root, "latest", versions=())
    _corrupt(mdir, 1)
    r = _rollout(repo_root, settings_for)

    async def scenario():
        with pytest.raises(ModelFailed, match="no working version: v1: model file unreadable or corrupt"):
            await r.resolve("m")
        await r.preload(["m"])
        assert not r.ready and "no working version" in r.preload_errors["m"]

    _run(r, scenario)


def test_a_republished_default_is_swapped_only_when_its_new_files_work(repo_root, make_model, fake_manifest,
                                                                       settings_for):
    """Issue 18.10: republishing the same version number kept the old weights even after a reload."""
    mdir = _model(make_model, fake_manifest, repo_root)
    r = _rollout(repo_root, settings_for)

    async def scenario():
        first = (await r.resolve("m")).mv
        old = r.registry.loaded_model(("m", 1))
        shutil.rmtree(mdir / "1")
        _corrupt(mdir, 1)  # the same number, broken files
        report = await r.reload()
        assert "m:1" in report["failed"] and report["republished"] == []
        assert r.registry.loaded_model(("m", 1)) is old  # the old instance keeps serving
        assert await _default(r) == 1
        shutil.rmtree(mdir / "1")
        make_model(repo_root, "m", {**fake_manifest(delay_ms=1), "version_policy": "latest"})  # working again
        report = await r.reload()
        assert report["republished"] == ["m:1"]
        new = r.registry.loaded_model(("m", 1))
        assert new is not old and new.mv.fingerprint != first.fingerprint

    _run(r, scenario)


def test_a_version_written_in_place_is_retried_once_complete(repo_root, make_model, fake_manifest, settings_for):
    """Issue 18.11: a slow in-place copy failed once and was never retried (only the directory mtime was read)."""
    mdir = _model(make_model, fake_manifest, repo_root)
    r = _rollout(repo_root, settings_for)

    async def scenario():
        await _default(r)
        (mdir / "2").mkdir()
        (mdir / "2" / "model.fake").write_bytes(b"corrupt: half written")
        assert "m:2" in (await r.reload())["failed"]
        (mdir / "2" / "model.fake").write_bytes(b"")  # the copy completes: same directory, new file contents
        assert (await r.reload())["switched"] == {"m": [1, 2]}

    _run(r, scenario)


def test_a_broken_model_toml_keeps_the_model_serving(repo_root, make_model, fake_manifest, settings_for):
    """Issue 18.8: a syntax error in a live model's model.toml unloaded every version (4,973 x 503)."""
    mdir = _model(make_model, fake_manifest, repo_root)
    r = _rollout(repo_root, settings_for)

    async def scenario():
        await _default(r)
        model = r.registry.loaded_model(("m", 1))
        (mdir / "model.toml").write_text('task = "tensor\n')
        report = await r.reload()
        assert "not valid TOML" in report["manifest_errors"]["m"] and report["unloaded"] == []
        assert r.registry.loaded_model(("m", 1)) is model and await _default(r) == 1

    _run(r, scenario)


def test_a_changed_manifest_is_a_new_publication_of_its_loaded_versions(repo_root, make_model, fake_manifest,
                                                                        settings_for):
    mdir = _model(make_model, fake_manifest, repo_root)
    r = _rollout(repo_root, settings_for)

    async def scenario():
        await _default(r)
        old = r.registry.loaded_model(("m", 1))
        make_model(repo_root, "m", {**fake_manifest(fail_load="boom"), "version_policy": "latest"})
        assert "m:1" in (await r.reload())["failed"]
        assert r.registry.loaded_model(("m", 1)) is old  # a manifest that breaks the model is not applied
        make_model(repo_root, "m", {**fake_manifest(), "version_policy": "latest",
                                    "batching": {"max_batch_size": 3}})
        assert (await r.reload())["republished"] == ["m:1"]
        assert r.registry.loaded_model(("m", 1)).batcher.cfg.max_batch_size == 3
        assert mdir.is_dir()

    _run(r, scenario)


def test_a_reload_of_one_model_leaves_the_others_alone(repo_root, make_model, fake_manifest, settings_for):
    mdir = _model(make_model, fake_manifest, repo_root)
    make_model(repo_root, "other", fake_manifest())
    r = _rollout(repo_root, settings_for)

    async def scenario():
        await _default(r)
        await r.resolve("other")
        _publish(mdir, 2)
        shutil.rmtree(repo_root / "other" / "1")
        report = await r.reload(only="m")
        assert report["switched"] == {"m": [1, 2]} and report["unloaded"] == ["m:1"]
        assert r.registry.loaded_model(("other", 1)) is not None  # its removal is seen by the next full re-read
        assert "other:1" in (await r.reload())["unloaded"]

    _run(r, scenario)
