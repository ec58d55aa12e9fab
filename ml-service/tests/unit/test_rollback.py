"""Rollback in the one version policy (rollout.py), on the fake runtime: the previous working version is the default
at once; the rolled-back one is held back (persisted in rollback.json) through re-reads and restarts, stays
pinnable where the policy allows, and a newer version that goes live ends the rollback."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from ml_service.errors import NoPreviousVersion, VersionNotFound
from ml_service.registry import ModelRegistry
from ml_service.repository import ROLLBACK_FILE, ModelRepository
from ml_service.rollout import Rollout

from .test_rollout import _default, _publish


def _rollout(root, settings_for) -> Rollout:
    settings = settings_for(root, eviction_idle_s=0.0)
    repo = ModelRepository(root)
    repo.scan()
    return Rollout(repo, ModelRegistry(settings), settings)


def _run(*rollouts: Rollout, scenario) -> None:
    async def main():
        try:
            await scenario()
        finally:
            for r in rollouts:
                await r.registry.close()

    asyncio.run(main())


def test_rollback_is_at_once_survives_reloads_and_restarts_and_ends_with_a_newer_version(
        repo_root, make_model, fake_manifest, settings_for):
    mdir = make_model(repo_root, "m", {**fake_manifest(), "version_policy": "all"}, versions=(1, 2, 3))
    r = _rollout(repo_root, settings_for)
    later = _rollout(repo_root, settings_for)  # a restart: a new process reads the same directory

    async def scenario():
        assert await _default(r) == 3
        assert await r.rollback("m") == ("m", 2, 3)
        assert await _default(r) == 2 and r.default(r.repository.get("m")) == 2  # at once, no re-read
        assert json.loads((mdir / ROLLBACK_FILE).read_text()) == {"held_back": [3]}
        assert (await r.resolve("m", 3)).mv.number == 3  # still pinnable under `all`
        for _ in range(2):
            assert (await r.reload())["switched"] == {}
            assert await _default(r) == 2
        later.repository.scan()
        assert await _default(later) == 2  # the rollback survives a restart
        assert await r.rollback("m") == ("m", 1, 2)
        assert r.repository.get("m").held_back == (2, 3)
        with pytest.raises(NoPreviousVersion):
            await r.rollback("m")
        _publish(mdir, 4)  # a newer version goes live and ends the rollback
        assert (await r.reload())["switched"] == {"m": [1, 4]}
        assert not (mdir / ROLLBACK_FILE).exists() and r.repository.get("m").held_back == ()
        shutil.rmtree(mdir / "4")  # ended for good: 3 is the newest again
        await r.reload()
        assert await _default(r) == 3

    _run(r, later, scenario=scenario)


def test_rollback_skips_a_broken_version_and_under_latest_only_the_default_is_served(
        repo_root, make_model, fake_manifest, settings_for):
    mdir = make_model(repo_root, "m", {**fake_manifest(), "version_policy": "latest"}, versions=(1, 2, 3))
    (mdir / "2" / "model.fake").write_bytes(b"corrupt: truncated")
    r = _rollout(repo_root, settings_for)

    async def scenario():
        assert await _default(r) == 3
        assert await r.rollback("m") == ("m", 1, 3)  # the newest *working* version before it
        assert await _default(r) == 1
        with pytest.raises(VersionNotFound):
            await r.resolve("m", 3)  # under `latest` only the default is served
        await asyncio.sleep(0.05)
        assert ("m", 3) not in {(m.name, m.version) for m in r.registry.loaded}  # drained and unloaded
        with pytest.raises(NoPreviousVersion):
            await r.rollback("m")
        assert r.repository.get("m").held_back == (3,)  # a refused rollback changes nothing

    _run(r, scenario=scenario)


def test_an_unreadable_rollback_file_holds_nothing_back(repo_root, make_model, fake_manifest, settings_for):
    mdir = make_model(repo_root, "m", {**fake_manifest(), "version_policy": "all"}, versions=(1, 2))
    (mdir / ROLLBACK_FILE).write_text("{not json")
    r = _rollout(repo_root, settings_for)

    async def scenario():
        assert await _default(r) == 2

    _run(r, scenario=scenario)
