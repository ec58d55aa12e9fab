"""Load profiles: the first load of a version's files is measured alone with a full-size warm-up and its cost is
kept in the repository; a later load of the same files under the same settings (a restart) takes that cost, runs
beside other loads and warms up with one item. Anything else (other files, other settings, no profile file, a
broken one) is measured again."""

from __future__ import annotations

import json
import threading

import pytest

from ml_service.errors import ModelUnavailable
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


def _edit_profile(repo_root, **fields) -> None:
    data = json.loads((repo_root / PROFILES_FILE).read_text())
    data["m:1"][0].update(fields)
    (repo_root / PROFILES_FILE).write_text(json.dumps(data))


def test_the_budget_holds_room_for_what_the_profile_says_before_loading(repo_root, make_model, settings_for):
    make_model(repo_root, "m", text_manifest())
    _load(repo_root, settings_for)
    _edit_profile(repo_root, memory_bytes=8 * 2**30)  # these files, under these settings, once took 8 GB
    reg = make_registry(repo_root, settings_for, compute_workers=2, memory_budget_mb=1024)

    async def scenario():
        with pytest.raises(ModelUnavailable, match="more than the whole memory budget"):
            await reg.get("m")

    run(reg, scenario)
    assert reg.loads == []  # refused before anything was loaded, not after


def test_a_profile_measured_on_another_device_is_not_taken_and_is_measured_again(repo_root, make_model,
                                                                                  settings_for):
    make_model(repo_root, "m", text_manifest())
    first, _ = _load(repo_root, settings_for)
    _edit_profile(repo_root, device="cuda", memory_bytes=1)  # `auto` found a GPU when it was measured
    model, _ = _load(repo_root, settings_for)
    assert not model.profiled and model.memory_bytes >= first.memory_bytes  # the estimate, not the GPU's figure
    assert json.loads((repo_root / PROFILES_FILE).read_text())["m:1"] == []  # forgotten
    model, batches = _load(repo_root, settings_for)
    assert not model.profiled and batches == [4, 4]  # measured again, on the device it runs on
    assert _load(repo_root, settings_for)[0].profiled


def test_versions_gone_from_the_repository_are_forgotten(repo_root, make_model, settings_for):
    make_model(repo_root, "m", text_manifest())
    _load(repo_root, settings_for)
    data = json.loads((repo_root / PROFILES_FILE).read_text())
    data["gone:3"] = data["m:1"]
    (repo_root / PROFILES_FILE).write_text(json.dumps(data))
    make_model(repo_root, "n", text_manifest())
    reg = make_registry(repo_root, settings_for, compute_workers=2)

    async def scenario():
        await reg.get("n")

    run(reg, scenario)
    assert set(json.loads((repo_root / PROFILES_FILE).read_text())) == {"m:1", "n:1"}
    assert (repo_root / PROFILES_FILE).stat().st_mode & 0o777 == 0o644  # readable by replicas of another user


def test_a_profile_counts_only_for_its_fingerprint_and_setup(tmp_path):
    for version in ("m/1", "m/2"):
        (tmp_path / version).mkdir(parents=True)
    profiles = LoadProfiles(tmp_path)
    profiles.put("m:1", "f1", "setup-a", LoadProfile(300, 200, "cpu"))
    reread = LoadProfiles(tmp_path)
    assert reread.get("m:1", "f1", "setup-a") == LoadProfile(300, 200, "cpu")
    assert reread.get("m:1", "f2", "setup-a") is None
    assert reread.get("m:1", "f1", "setup-b") is None
    assert reread.get("m:2", "f1", "setup-a") is None
    profiles.put("m:1", "f2", "setup-a", LoadProfile(400, 250, "cpu"))  # a set-up keeps one profile: its latest files
    assert LoadProfiles(tmp_path).get("m:1", "f1", "setup-a") is None
    LoadProfiles(tmp_path).put("m:2", "f1", "setup-a", LoadProfile(10, 5, "cpu"))  # another process, meanwhile
    profiles.put("m:1", "f2", "setup-b", LoadProfile(500, 260, "cpu"))
    merged = LoadProfiles(tmp_path)
    assert merged.get("m:2", "f1", "setup-a") == LoadProfile(10, 5, "cpu")  # not lost by the first one's write
    assert merged.get("m:1", "f2", "setup-a") == LoadProfile(400, 250, "cpu")
    assert merged.get("m:1", "f2", "setup-b") == LoadProfile(500, 260, "cpu")
    for i in range(6):
        profiles.put("m:1", "f2", f"setup-{i}", LoadProfile(1, 1, "cpu"))
    assert len(json.loads((tmp_path / PROFILES_FILE).read_text())["m:1"]) == 4  # the last few set-ups
    (tmp_path / PROFILES_FILE).write_text(json.dumps({"m:1": [{"fingerprint": "f2", "setup": "setup-a",
                                                               "memory_bytes": "many", "resident_bytes": 1}]}))
    assert LoadProfiles(tmp_path).get("m:1", "f2", "setup-a") is None
    assert LoadProfiles(None).get("m:1", "f1", "setup-a") is None
    LoadProfiles(None).put("m:1", "f1", "setup-a", LoadProfile(1, 1, "cpu"))  # nowhere to keep it: nothing happens


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

    def shared_late() -> None:
        with gate.shared():
            order.append("late shared")

    t3 = threading.Thread(target=shared_late)
    t3.start()
    t3.join(0.2)
    assert t3.is_alive()  # a profiled load arriving now waits behind the measured one: it is not starved
    release.set()
    for t in (t1, t2, t3):
        t.join(5)
    assert order[-3:] == ["shared done", "alone", "late shared"]


def test_priming_runs_each_library_once_and_a_failure_is_left_to_the_load(caplog):
    from types import SimpleNamespace

    from ml_service import loading
    from ml_service.runtime.base import RuntimeOptions

    loading._PRIMED.discard("runtime no-such-runtime")
    broken = SimpleNamespace(runtime="no-such-runtime", task="embedding")
    with caplog.at_level("WARNING", logger="ml_service.loading"):
        loading.prime([broken, broken], RuntimeOptions())
    assert [r.getMessage() for r in caplog.records if "no-such-runtime" in r.getMessage()] == [
        "could not prime runtime no-such-runtime (ManifestError); its first load counts its one-time costs"]
    assert {"runtime no-such-runtime", "task embedding"} <= loading._PRIMED


def test_the_onnx_priming_graph_is_one_matmul_and_runs():
    import onnx
    from onnx import TensorProto, helper

    from ml_service.runtime.base import RuntimeOptions
    from ml_service.runtime.onnx import _PRIME_GRAPH, OnnxRuntime

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "prime",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.0] * 16)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ml-service")
    model.ir_version = 8
    assert model.SerializeToString() == _PRIME_GRAPH
    onnx.checker.check_model(onnx.load_from_string(_PRIME_GRAPH))
    OnnxRuntime.prime(RuntimeOptions())  # opens and runs it with the models' session options
