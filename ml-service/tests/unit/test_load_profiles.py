"""Load profiles: the first load of a version's files is measured alone with a full-size warm-up and its cost is
kept in the repository; a later load of the same files under the same settings (a restart) takes that cost, runs
beside other loads and warms up with one item. Anything else (other files, other settings, no profile file, a
broken one) is measured again."""

from __future__ import annotations

import json
import threading

from ml_service.loading import _LoadGate
from ml_service.profiles import PROFILES_FILE, LoadProfile, LoadProfiles

from .registry_support import make_registry, run

IDS = [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]},
       {"name": "attention_mask", "dtype": "int64", "shape": [-1, -1]}]


def text_manifest() -> dict:  # type: ignore[type-arg]
    """An embedding model on the fake runtime: its full warm-up is 4 texts of 8 tokens, per worker."""
    return {"task": "embedding", "runtime": "fake", "file": "model.fake",
            "preprocessing": {"tokenizer": "tokenizer.json", "max_tokens": 8},
            "batching": {"max_batch_size": 4, "max_batch_tokens": 32},
            "inputs": IDS, "outputs": [{"name": "last_hidden_state", "dtype": "float32", "shape": [-1, -1, 8]}]}


def _load(repo_root, settings_for, **settings):
    """A fresh registry (as after a restart) loads model `m` once: (the loaded model, its runtime's batches)."""
    reg = make_registry(repo_root, settings_for, compute_workers=2, **settings)
    out = {}

    async def scenario():
        model = await reg.get("m")
        out["model"], out["batches"] = model, list(model.runtime.batches)

    run(reg, scenario)
    return out["model"], out["batches"]


def test_the_first_load_is_measured_and_kept_and_a_restart_takes_its_profile(repo_root, make_model, settings_for):
    make_model(repo_root, "m", text_manifest())
    first, batches = _load(repo_root, settings_for)
    assert not first.profiled
    assert batches == [4, 4]  # a full batch on each of the two workers
    (kept,) = json.loads((repo_root / PROFILES_FILE).read_text())["m:1"]
    assert kept["fingerprint"] == first.mv.fingerprint
    assert (kept["memory_bytes"], kept["resident_bytes"]) == (first.memory_bytes, first.resident_bytes)

    again, batches = _load(repo_root, settings_for)
    assert again.profiled
    assert batches == [1]  # one small item proves the files still run
    assert (again.memory_bytes, again.resident_bytes) == (first.memory_bytes, first.resident_bytes)


def test_other_files_or_other_settings_are_measured_again(repo_root, make_model, settings_for):
    mdir = make_model(repo_root, "m", text_manifest())
    _load(repo_root, settings_for)
    (mdir / "1" / "model.fake").write_bytes(b"republished")
    model, batches = _load(repo_root, settings_for)
    assert not model.profiled and batches == [4, 4]
    (kept,) = json.loads((repo_root / PROFILES_FILE).read_text())["m:1"]
    assert kept["fingerprint"] == model.mv.fingerprint
    model, _ = _load(repo_root, settings_for, intra_op_threads=2)  # measured under other settings
    assert not model.profiled
    model, _ = _load(repo_root, settings_for, intra_op_threads=2)
    assert model.profiled
    model, _ = _load(repo_root, settings_for)  # each set-up keeps its own (replicas with other settings)
    assert model.profiled


def test_profiles_off_or_unusable_mean_every_load_is_measured(repo_root, make_model, settings_for):
    make_model(repo_root, "m", text_manifest())
    for _ in range(2):
        model, _ = _load(repo_root, settings_for, load_profiles=False)
        assert not model.profiled
    assert not (repo_root / PROFILES_FILE).exists()

    (repo_root / PROFILES_FILE).write_text("{not json")
    model, _ = _load(repo_root, settings_for)
    assert not model.profiled  # a broken file is ignored, then replaced
    assert _load(repo_root, settings_for)[0].profiled

    (repo_root / PROFILES_FILE).unlink()
    (repo_root / PROFILES_FILE).mkdir()  # cannot be read or written (like a read-only mount)
    for _ in range(2):
        model, _ = _load(repo_root, settings_for)
        assert not model.profiled


def test_a_profile_counts_only_for_its_fingerprint_and_setup(tmp_path):
    profiles = LoadProfiles(tmp_path)
    profiles.put("m:1", "f1", "setup-a", LoadProfile(300, 200))
    reread = LoadProfiles(tmp_path)
    assert reread.get("m:1", "f1", "setup-a") == LoadProfile(300, 200)
    assert reread.get("m:1", "f2", "setup-a") is None
    assert reread.get("m:1", "f1", "setup-b") is None
    assert reread.get("m:2", "f1", "setup-a") is None
    profiles.put("m:1", "f2", "setup-a", LoadProfile(400, 250))  # a set-up keeps one profile: its latest files
    assert LoadProfiles(tmp_path).get("m:1", "f1", "setup-a") is None
    LoadProfiles(tmp_path).put("m:2", "f1", "setup-a", LoadProfile(10, 5))  # another process, meanwhile
    profiles.put("m:1", "f2", "setup-b", LoadProfile(500, 260))
    merged = LoadProfiles(tmp_path)
    assert merged.get("m:2", "f1", "setup-a") == LoadProfile(10, 5)  # not lost by the first one's write
    assert merged.get("m:1", "f2", "setup-a") == LoadProfile(400, 250)
    assert merged.get("m:1", "f2", "setup-b") == LoadProfile(500, 260)
    for i in range(6):
        profiles.put("m:1", "f2", f"setup-{i}", LoadProfile(1, 1))
    assert len(json.loads((tmp_path / PROFILES_FILE).read_text())["m:1"]) == 4  # the last few set-ups
    (tmp_path / PROFILES_FILE).write_text(json.dumps({"m:1": [{"fingerprint": "f2", "setup": "setup-a",
                                                               "memory_bytes": "many", "resident_bytes": 1}]}))
    assert LoadProfiles(tmp_path).get("m:1", "f2", "setup-a") is None
    assert LoadProfiles(None).get("m:1", "f1", "setup-a") is None
    LoadProfiles(None).put("m:1", "f1", "setup-a", LoadProfile(1, 1))  # nowhere to keep it: nothing happens


def test_profiled_loads_share_the_gate_and_a_measured_one_waits_for_them():
    gate = _LoadGate()
    both_in = threading.Barrier(2, timeout=5)
    order: list[str] = []

    def shared(name: str) -> None:
        with gate.shared():
            both_in.wait()  # only passes when the two shared holders are inside at once
            order.append(name)

    threads = [threading.Thread(target=shared, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(order) == ["a", "b"]

    inside = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with gate.shared():
            inside.set()
            release.wait(5)
            order.append("shared done")

    def measured() -> None:
        with gate.alone():
            order.append("alone")

    t1 = threading.Thread(target=holder)
    t1.start()
    assert inside.wait(5)
    t2 = threading.Thread(target=measured)
    t2.start()
    t2.join(0.2)
    assert t2.is_alive()  # waits for the shared holder
    release.set()
    t1.join(5)
    t2.join(5)
    assert order[-2:] == ["shared done", "alone"]
