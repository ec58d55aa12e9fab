"""Scanning the model repository: valid and invalid models, aliases, version policies."""

from __future__ import annotations

import logging
import os

import pytest

from ml_service.errors import ModelNotFound, ModelUnavailable, VersionNotFound
from ml_service.repository import ModelRepository, scan_model_dir


def _image(policy="latest", **extra):
    return {"task": "image-classification", "labels": "labels.txt", "version_policy": policy, **extra}


def _embedding(**extra):
    return {"task": "embedding", "preprocessing": {"tokenizer": "tokenizer.json"}, **extra}


def test_valid_models_are_found(repo_root, make_model, fake_manifest):
    make_model(repo_root, "vision", _image(), labels=["cat", "dog"])
    make_model(repo_root, "text", _embedding(), versions=(1, 2))
    make_model(repo_root, "sum", fake_manifest())
    entries = ModelRepository(repo_root).scan()
    assert sorted(entries) == ["sum", "text", "vision"]
    assert all(e.valid for e in entries.values()), {n: e.error for n, e in entries.items()}
    assert entries["vision"].labels == ["cat", "dog"]
    assert sorted(entries["text"].versions) == [1, 2]
    assert entries["text"].served_versions == [2]


def test_invalid_model_is_reported_by_name_and_never_stops_the_others(repo_root, make_model, fake_manifest,
                                                                       caplog):
    make_model(repo_root, "a-good", fake_manifest())
    bad = repo_root / "b-bad"
    bad.mkdir()
    (bad / "model.toml").write_text("task = [unclosed\n")
    (bad / "1").mkdir()
    make_model(repo_root, "c-wrong-task", {"task": "translation"})
    make_model(repo_root, "d-good", fake_manifest())
    (repo_root / "e-no-manifest" / "1").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="ml_service.repository"):
        entries = ModelRepository(repo_root).scan()
    assert sorted(entries) == ["a-good", "b-bad", "c-wrong-task", "d-good", "e-no-manifest"]
    assert entries["a-good"].valid and entries["d-good"].valid
    assert not entries["b-bad"].valid and "not valid TOML" in entries["b-bad"].error
    assert not entries["c-wrong-task"].valid and "task" in entries["c-wrong-task"].error
    assert not entries["e-no-manifest"].valid and "model.toml is missing" in entries["e-no-manifest"].error
    logged = caplog.text
    for name in ("b-bad", "c-wrong-task", "e-no-manifest"):
        assert f"model {name} is invalid" in logged
    assert "a-good is invalid" not in logged


def test_invalid_model_cannot_be_used(repo_root, make_model):
    make_model(repo_root, "broken", {"task": "translation"})
    repo = ModelRepository(repo_root)
    repo.scan()
    with pytest.raises(ModelUnavailable, match=r"broken.*invalid"):
        repo.get("broken").version(None)


def test_bad_directory_name(repo_root, make_model, fake_manifest):
    make_model(repo_root, "has space", fake_manifest())
    entry = ModelRepository(repo_root).scan()["has space"]
    assert not entry.valid
    assert "not a valid model name" in entry.error


def test_hidden_directories_and_files_are_ignored(repo_root, make_model, fake_manifest):
    make_model(repo_root, ".cache", fake_manifest())
    (repo_root / "README.md").write_text("not a model")
    make_model(repo_root, "m", fake_manifest())
    assert list(ModelRepository(repo_root).scan()) == ["m"]


def test_missing_root_is_empty_not_an_error(tmp_path):
    repo = ModelRepository(tmp_path / "nope")
    assert repo.scan() == {}
    with pytest.raises(ModelNotFound):
        repo.get("anything")


def test_rescan_picks_up_changes(repo_root, make_model, fake_manifest):
    repo = ModelRepository(repo_root)
    assert repo.scan() == {}
    make_model(repo_root, "late", fake_manifest())
    assert "late" in repo.scan()
    assert repo.get("late").valid


# -- aliases ---------------------------------------------------------------------------------
def test_aliases_resolve_to_the_model(repo_root, make_model):
    make_model(repo_root, "text-embedding", _embedding(aliases=["bert", "embedder"]))
    repo = ModelRepository(repo_root)
    repo.scan()
    assert repo.canonical_name("bert") == "text-embedding"
    assert repo.get("embedder").name == "text-embedding"
    assert repo.get("text-embedding").name == "text-embedding"
    assert repo.aliases_of("text-embedding") == ["bert", "embedder"]


def test_unknown_name_lists_the_known_ones(repo_root, make_model):
    make_model(repo_root, "text-embedding", _embedding(aliases=["bert"]))
    repo = ModelRepository(repo_root)
    repo.scan()
    with pytest.raises(ModelNotFound) as info:
        repo.get("gpt")
    assert "'gpt'" in info.value.message
    assert "text-embedding" in info.value.message
    assert "bert" in info.value.message


def test_alias_that_names_another_model_is_refused(repo_root, make_model, fake_manifest, caplog):
    make_model(repo_root, "alpha", {**fake_manifest(), "aliases": ["beta", "shared"]})
    make_model(repo_root, "beta", {**fake_manifest(), "aliases": ["shared", "b"]})
    os.utime(repo_root / "beta" / "model.toml", (1_000_000, 1_000_000))  # beta's claim is the older one
    repo = ModelRepository(repo_root)
    with caplog.at_level(logging.WARNING):
        repo.scan()
    assert repo.get("beta").name == "beta"  # a model name wins over an alias
    assert repo.get("shared").name == "beta"  # the first claim (the oldest model.toml) keeps the alias
    assert repo.get("b").name == "beta"
    assert repo.aliases_of("alpha") == []
    assert repo.get("alpha").alias_conflicts == ["beta", "shared"]
    assert "alias 'beta' is already claimed by model beta; the claim is refused" in caplog.text


def test_a_new_model_cannot_take_an_alias_that_is_in_use(repo_root, make_model, fake_manifest, caplog):
    """Issue 9: a new `bert2` declaring `bert` (and sorting first) must not silently move `bert`."""
    make_model(repo_root, "text-embedding", {**fake_manifest(), "aliases": ["bert"]})
    repo = ModelRepository(repo_root)
    repo.scan()
    assert repo.canonical_name("bert") == "text-embedding"
    make_model(repo_root, "bert2", {**fake_manifest(), "aliases": ["bert"]})
    os.utime(repo_root / "bert2" / "model.toml", (1_000_000, 1_000_000))  # even with an older file
    with caplog.at_level(logging.ERROR):
        repo.scan()
    assert repo.canonical_name("bert") == "text-embedding"  # the holder keeps it across rescans
    assert repo.get("bert2").alias_conflicts == ["bert"] and repo.get("bert2").valid
    assert "model bert2: alias 'bert' is already claimed by model text-embedding" in caplog.text
    fresh = ModelRepository(repo_root)  # a restart: the older claim (by model.toml time) wins
    fresh.scan()
    assert fresh.canonical_name("bert") == "bert2"


# -- versions ----------------------------------------------------------------------------------
def test_version_policy_latest(repo_root, make_model):
    make_model(repo_root, "m", _image("latest"), versions=(1, 2, 10), labels=["x"])
    entry = ModelRepository(repo_root).scan()["m"]
    assert entry.served_versions == [10]  # numeric, not lexical order
    assert entry.version(None).number == 10
    assert entry.version("10").number == 10
    with pytest.raises(VersionNotFound, match="served versions: \\[10\\]"):
        entry.version(2)


def test_version_policy_all(repo_root, make_model):
    make_model(repo_root, "m", _image("all"), versions=(1, 2, 3), labels=["x"])
    entry = ModelRepository(repo_root).scan()["m"]
    assert entry.served_versions == [1, 2, 3]
    assert entry.version(None).number == 3
    assert entry.version(1).number == 1
    assert entry.version("2").number == 2


def test_version_policy_list(repo_root, make_model):
    make_model(repo_root, "m", _image([1, 3]), versions=(1, 2, 3, 4), labels=["x"])
    entry = ModelRepository(repo_root).scan()["m"]
    assert entry.valid
    assert entry.served_versions == [1, 3]
    assert entry.version(None).number == 3
    assert entry.version(1).path.name == "1"
    for not_served in (2, 4, 5):
        with pytest.raises(VersionNotFound):
            entry.version(not_served)


@pytest.mark.parametrize("bad", ["abc", "1.5", "-", 0, -1, 99])
def test_pinned_version_that_is_not_served(repo_root, make_model, bad):
    make_model(repo_root, "m", _image("all"), versions=(1, 2), labels=["x"])
    entry = ModelRepository(repo_root).scan()["m"]
    with pytest.raises(VersionNotFound) as info:
        entry.version(bad)
    assert info.value.status_code == 404


def test_version_directories_must_be_positive_numbers(repo_root, make_model):
    mdir = make_model(repo_root, "m", _image("all"), versions=(1,), labels=["x"])
    for odd in ("0", "v2", "latest", "2a"):
        (mdir / odd).mkdir()
    assert sorted(ModelRepository(repo_root).scan()["m"].versions) == [1]


def test_missing_version_files_make_that_version_unservable(repo_root, make_model):
    mdir = make_model(repo_root, "m", _embedding(version_policy="all"), versions=(1, 2, 3))
    (mdir / "2" / "model.onnx").unlink()
    (mdir / "3" / "tokenizer.json").unlink()
    entry = ModelRepository(repo_root).scan()["m"]
    assert entry.valid
    assert entry.versions[2].error == "missing file(s): model.onnx"
    assert entry.versions[3].error == "missing file(s): tokenizer.json"
    assert entry.served_versions == [1]
    with pytest.raises(VersionNotFound):
        entry.version(3)


def test_latest_skips_a_broken_newest_version(repo_root, make_model):
    mdir = make_model(repo_root, "m", _embedding(), versions=(1, 2))
    (mdir / "2" / "model.onnx").unlink()
    entry = ModelRepository(repo_root).scan()["m"]
    assert entry.served_versions == [1]


def test_shared_files_in_the_model_directory_count(repo_root, make_model):
    mdir = make_model(repo_root, "m", _embedding(), versions=(1,))
    (mdir / "1" / "tokenizer.json").rename(mdir / "tokenizer.json")
    entry = ModelRepository(repo_root).scan()["m"]
    assert entry.valid
    v = entry.version(None)
    assert entry.file(v, "tokenizer.json") == mdir / "tokenizer.json"
    assert entry.file(v, "model.onnx") == mdir / "1" / "model.onnx"


def test_no_version_directories(repo_root, make_model):
    make_model(repo_root, "m", _image(), versions=(), labels=["x"])
    entry = ModelRepository(repo_root).scan()["m"]
    assert not entry.valid
    assert "no version directories" in entry.error


def test_no_version_is_servable(repo_root, make_model):
    mdir = make_model(repo_root, "m", _image(), versions=(1,), labels=["x"])
    (mdir / "1" / "model.onnx").unlink()
    entry = ModelRepository(repo_root).scan()["m"]
    assert not entry.valid
    assert "no servable version" in entry.error
    assert "v1: missing file(s): model.onnx" in entry.error
    with pytest.raises(ModelUnavailable):
        entry.version(None)


def test_policy_list_matching_no_version(repo_root, make_model):
    make_model(repo_root, "m", _image([7]), versions=(1, 2), labels=["x"])
    entry = ModelRepository(repo_root).scan()["m"]
    assert not entry.valid
    assert "no servable version under policy [7]" in entry.error


# -- labels ------------------------------------------------------------------------------------
def test_labels_skip_blank_lines(repo_root, make_model):
    mdir = make_model(repo_root, "m", _image(), labels=["x"])
    (mdir / "labels.txt").write_text("\n  cat \n\ndog\n")
    assert scan_model_dir(mdir).labels == ["cat", "dog"]


def test_missing_labels_file(repo_root, make_model):
    make_model(repo_root, "m", _image())
    entry = ModelRepository(repo_root).scan()["m"]
    assert not entry.valid
    assert entry.error == "labels file is missing: labels.txt"


def test_empty_labels_file(repo_root, make_model):
    make_model(repo_root, "m", _image(), labels=[])
    entry = ModelRepository(repo_root).scan()["m"]
    assert not entry.valid
    assert "labels file labels.txt is empty" in entry.error


def test_the_vertex_model_is_the_setting_else_the_only_model_else_text_embedding(tmp_path, make_model,
                                                                                 fake_manifest):
    from ml_service.repository import ModelRepository
    from ml_service.settings import Settings
    from ml_service.vertex import served_model

    repo = ModelRepository(tmp_path)
    make_model(tmp_path, "cnn", fake_manifest())
    repo.scan()
    assert served_model(Settings(model_cache_dir=tmp_path), repo) == "cnn"
    assert served_model(Settings(model_cache_dir=tmp_path, vertex_model="other"), repo) == "other"
    make_model(tmp_path, "second", fake_manifest())
    repo.scan()
    assert served_model(Settings(model_cache_dir=tmp_path), repo) == "text-embedding"
