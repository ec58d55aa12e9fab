"""Helpers shared by the model builders: package paths, manifests, stamps, ONNX graph surgery."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

BUILD_VERSION = "4"  # bump to force rebuilds when the build itself changes
#: the ONNX IR version of graphs we write ourselves: onnx's newest (14) is refused by runtimes a release behind, such
#: as onnxruntime-gpu in the GPU image ("Unsupported model IR version: 14, max supported IR version: 13")
IR_VERSION = 8


def package_dir(module: str) -> Path:
    """The installed directory of a package (weights ship inside packages, never from a hub)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"package {module!r} is not installed; run `make venv` (the build extra)")
    return Path(next(iter(spec.submodule_search_locations)))


def version_of(dist: str) -> str:
    return md.version(dist)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def write_manifest(path: Path, top: dict[str, Any], tables: dict[str, dict[str, Any]],
                   arrays: dict[str, list[dict[str, Any]]] | None = None) -> None:
    """Write a model.toml (the subset of TOML the manifests use)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, rows in (arrays or {}).items():
        for row in rows:
            lines += ["", f"[[{name}]]"] + [f"{k} = {toml_value(v)}" for k, v in row.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def fingerprint(*parts: str) -> str:
    h = hashlib.sha256()
    for p in (BUILD_VERSION, *parts):
        h.update(p.encode())
    return h.hexdigest()[:16]


def up_to_date(model_dir: Path, fp: str) -> bool:
    stamp = model_dir / ".build.json"
    try:
        return bool(json.loads(stamp.read_text())["fingerprint"] == fp)
    except (OSError, ValueError, KeyError):
        return False


def write_stamp(model_dir: Path, fp: str, report: dict[str, Any]) -> None:
    (model_dir / ".build.json").write_text(json.dumps({"fingerprint": fp, "report": report}, indent=2))


def read_report(model_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((model_dir / ".build.json").read_text())
        report: dict[str, Any] = data["report"]
        return report
    except (OSError, ValueError, KeyError):
        return {}


def append_linear_head(src: Path, dst: Path, weight: np.ndarray, bias: np.ndarray,
                       input_name: str = "sentence_embedding", output_name: str = "logits") -> None:
    """Fold `x @ W.T + b` onto an embedding graph's output, so one ONNX file is encoder + head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    wt = numpy_helper.from_array(np.ascontiguousarray(weight.T.astype(np.float32)), "head_weight_t")
    b = numpy_helper.from_array(bias.astype(np.float32), "head_bias")
    g.initializer.extend([wt, b])
    g.node.extend([
        helper.make_node("MatMul", [input_name, "head_weight_t"], ["head_matmul"], name="head_MatMul"),
        helper.make_node("Add", ["head_matmul", "head_bias"], [output_name], name="head_Add"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", weight.shape[0]]))
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def linear_head_model(dst: Path, weight: np.ndarray, bias: np.ndarray, dim: int) -> None:
    """A standalone head graph: `embedding [N, dim]` -> `logits [N, C]` (for the shared encoder)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    wt = numpy_helper.from_array(np.ascontiguousarray(weight.T.astype(np.float32)), "head_weight_t")
    b = numpy_helper.from_array(bias.astype(np.float32), "head_bias")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["embedding", "head_weight_t"], ["mm"]),
         helper.make_node("Add", ["mm", "head_bias"], ["logits"])],
        "linear_head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", weight.shape[0]])],
        [wt, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def offline_env() -> None:
    """No machine here reaches a model hub: make every library fail fast instead of trying."""
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[k] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
