"""Scanning the model repository: valid and invalid models, aliases, version policies."""

from __future__ import annotations

import logging
import os

import pytest

from ml_service.errors import ModelNotFound
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
    assert entries["vision"].versions[1].labels == ("cat", "dog")
    assert sorted(entries["text"].versions) == [1, 2]
    assert entries["text"].candidates == (1, 2)


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


def test_invalid_model_has_no_candidates(repo_root, make_model):
    make_model(repo_root, "broken", {"task": "translation"})
    repo = ModelRepository(repo_root)
    repo.scan()
    assert repo.get("broken").candidates == () and not repo.get("broken").valid


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
# (which candidate serves, and what a request may pin, is the rollout's: tests/unit/test_rollout.py)
def test_candidates_are_numeric_and_follow_the_policy(repo_root, make_model):
    make_model(repo_root, "latest", _image("latest"), versions=(1, 2, 10), labels=["x"])
    make_model(repo_root, "all", _image("all"), versions=(1, 2, 3), labels=["x"])
    make_model(repo_root, "list", _image([1, 3]), versions=(1, 2, 3, 4), labels=["x"])
    entries = ModelRepository(repo_root).scan()
    assert entries["latest"].candidates == (1, 2, 10)  # numeric, not lexical order; the newest working serves
    assert entries["all"].candidates == (1, 2, 3)
    assert entries["list"].candidates == (1, 3) and entries["list"].valid


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
    assert entry.candidates == (1,)


def test_shared_files_in_the_model_directory_count(repo_root, make_model):
    mdir = make_model(repo_root, "m", _embedding(), versions=(1,))
    (mdir / "1" / "tokenizer.json").rename(mdir / "tokenizer.json")
    entry = ModelRepository(repo_root).scan()["m"]
    assert entry.valid
    v = entry.versions[1]
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


def test_policy_list_matching_no_version(repo_root, make_model):
    make_model(repo_root, "m", _image([7]), versions=(1, 2), labels=["x"])
    entry = ModelRepository(repo_root).scan()["m"]
    assert not entry.valid
    assert "no servable version under policy [7]" in entry.error


# -- labels ------------------------------------------------------------------------------------
def test_labels_skip_blank_lines(repo_root, make_model):
    mdir = make_model(repo_root, "m", _image(), labels=["x"])
    (mdir / "labels.txt").write_text("\n  cat \n\ndog\n")
    assert scan_model_dir(mdir).versions[1].labels == ("cat", "dog")


def test_missing_labels_file(repo_root, make_model):
    make_model(repo_root, "m", _image())
    entry = ModelRepository(repo_root).scan()["m"]
    assert not entry.valid
    assert "labels file is missing: labels.txt" in entry.error


def test_empty_labels_file(repo_root, make_model):
    make_model(repo_root, "m", _image(), labels=[])
    entry = ModelRepository(repo_root).scan()["m"]
    assert not entry.valid
    assert "labels file labels.txt is empty" in entry.error


def test_labels_belong_to_a_version(repo_root, make_model):
    """A version may change its classes: its own labels file wins over the model's."""
    mdir = make_model(repo_root, "m", _image("all"), versions=(1, 2), labels=["cat", "dog"])
    (mdir / "2" / "labels.txt").write_text("cat\ndog\nbird\n")
    entry = ModelRepository(repo_root).scan()["m"]
    assert entry.versions[1].labels == ("cat", "dog") and entry.versions[2].labels == ("cat", "dog", "bird")


# -- fingerprints and the last good manifest -------------------------------------------------
def test_a_version_fingerprint_changes_with_its_files_labels_and_manifest(repo_root, make_model):
    mdir = make_model(repo_root, "m", _image("all"), versions=(1, 2), labels=["cat", "dog"])
    repo = ModelRepository(repo_root)
    before = {v: mv.fingerprint for v, mv in repo.scan()["m"].versions.items()}
    assert repo.scan()["m"].versions[1] is repo.scan()["m"].versions[1]  # unchanged: the same object
    (mdir / "2" / "model.onnx").write_bytes((mdir / "2" / "model.onnx").read_bytes())  # rewritten in place
    after = {v: mv.fingerprint for v, mv in repo.scan()["m"].versions.items()}
    assert after[1] == before[1] and after[2] != before[2]
    (mdir / "labels.txt").write_text("cat\ndog\nbird\n")  # the model's labels: every version uses them
    relabeled = {v: mv.fingerprint for v, mv in repo.scan()["m"].versions.items()}
    assert relabeled[1] != after[1] and relabeled[2] != after[2]
    toml = (mdir / "model.toml").read_text()
    (mdir / "model.toml").write_text(toml + "\n[batching]\nmax_batch_size = 3\n")
    assert repo.scan()["m"].versions[1].fingerprint != relabeled[1]
    (mdir / "model.toml").write_text(toml + '\n[card]\npurpose = "pets"\n')  # a card changes nothing loaded
    assert repo.scan()["m"].versions[1].fingerprint == relabeled[1]


def test_a_broken_model_toml_keeps_the_last_good_one_in_force(repo_root, make_model, caplog):
    mdir = make_model(repo_root, "m", _image("all", aliases=["pic"]), versions=(1,), labels=["cat", "dog"])
    repo = ModelRepository(repo_root)
    good = repo.scan()["m"]
    fingerprint = good.versions[1].fingerprint
    (mdir / "model.toml").write_text("task = [unclosed\n")
    with caplog.at_level(logging.ERROR, logger="ml_service.repository"):
        entry = repo.scan()["m"]
        repo.scan()
    assert entry.valid and entry.manifest is good.manifest and entry.versions[1].fingerprint == fingerprint
    assert "not valid TOML" in entry.manifest_error and "last good model.toml" in entry.manifest_error
    assert repo.canonical_name("pic") == "m"
    assert caplog.text.count("serving with the last good model.toml") == 1  # logged once, not every re-read
    fresh = ModelRepository(repo_root)  # a restart has no good manifest to keep: the model is invalid
    assert not fresh.scan()["m"].valid


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
