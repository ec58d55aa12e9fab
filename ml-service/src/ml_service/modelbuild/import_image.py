"""`models import` of image classifiers (a Transformers `*ForImageClassification` directory or a safetensors
state dict) and of ONNX files: the build's export (image.py), parity against PyTorch on real photos."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.modelbuild.checks import photo_bytes
from ml_service.modelbuild.image import export_image_classifier, image_tables, preprocess_reference
from ml_service.modelbuild.import_detect import Built, ImportRefused, Plan
from ml_service.modelbuild.import_text import FP32_MIN_COSINE
from ml_service.modelbuild.text import text_manifest, write_tokenizer

Progress = Callable[[str], None]


def load_torch_model(plan: Plan) -> Any:
    """The source as a PyTorch module returning logits; weights read with safetensors only (never a pickle)."""
    import torch

    if plan.kind == "hf-image":
        from transformers import AutoModelForImageClassification

        hf = AutoModelForImageClassification.from_pretrained(str(plan.model_dir), use_safetensors=True).eval()

        class Logits(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, pixel_values: Any) -> Any:
                return self.inner(pixel_values=pixel_values).logits

        return Logits(hf).eval()
    from efficientnet_lite_pytorch import EfficientNet
    from safetensors.torch import load_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = EfficientNet.from_name(plan.architecture, num_classes=len(plan.labels))
    state = load_file(str(plan.weights))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ImportRefused(f"the weights do not fit {plan.architecture}: {len(result.missing_keys)} missing "
                            f"(e.g. {result.missing_keys[:2]}), {len(result.unexpected_keys)} unexpected "
                            f"(e.g. {result.unexpected_keys[:2]})")
    return model.eval()


def build_image(plan: Plan, work: Path, stage: Path, first: int, progress: Progress) -> Built:
    """fp32 only (per-token int8 is a text-encoder method): export, then parity against PyTorch on real photos."""
    import torch

    model = load_torch_model(plan)
    progress("exporting to ONNX (dynamic batch)")
    d = stage / str(first)
    d.mkdir(parents=True)
    size = plan.image.image_size
    try:
        export_image_classifier(model, d / "model.onnx", size)
    except Exception as exc:
        raise ImportRefused(f"the export to ONNX failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    progress("checking parity against PyTorch on real photos")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    im = plan.image
    x = np.concatenate([preprocess_reference(b, size, im.resize, im.interpolation, im.mean, im.std)
                        for b in photo_bytes().values()])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = sess.run(None, {"pixel_values": x})[0]
    if got.shape[1] != len(plan.labels):
        raise ImportRefused(f"the model outputs {got.shape[1]} classes but has {len(plan.labels)} labels")
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    parity: dict[str, Any] = {
        "samples": len(x), "fp32_mean_cosine": float(cos.mean()), "fp32_min_cosine": float(cos.min()),
        "fp32_max_abs_diff": float(np.abs(ref - got).max()),
        "fp32_top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
        "top1": [plan.labels[int(i)] for i in got.argmax(1)]}
    if parity["fp32_min_cosine"] < FP32_MIN_COSINE or parity["fp32_top1_agreement"] < 1.0:
        raise ImportRefused(f"the ONNX export does not match PyTorch: min cosine {parity['fp32_min_cosine']:.6f}, "
                            f"same top label on {parity['fp32_top1_agreement']:.0%} of {len(x)} photos")
    (d / "labels.txt").write_text("\n".join(plan.labels) + "\n", encoding="utf-8")
    return Built({first: "fp32"}, parity, image_manifest(plan, len(plan.labels)), [], _image_feeds(size))


def image_manifest(plan: Plan, classes: int) -> tuple[dict[str, Any], ...]:
    im = plan.image
    top = {"task": "image-classification", "runtime": "onnx", "file": "model.onnx", "aliases": [],
           "version_policy": "latest", "labels": "labels.txt"}
    arrays = {"inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [-1, 3, im.image_size, im.image_size]}],
              "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, classes]}]}
    return top, image_tables(im.image_size, im.resize, im.interpolation, im.mean, im.std), arrays


def _image_feeds(size: int) -> Callable[[int], dict[str, np.ndarray]]:
    def feeds(n: int) -> dict[str, np.ndarray]:
        return {"pixel_values": np.random.default_rng(0).standard_normal((n, 3, size, size), dtype=np.float32)}
    return feeds


def build_onnx(plan: Plan, work: Path, stage: Path, first: int, progress: Progress) -> Built:
    """An ONNX file published as is, after onnx's checker and a load; its inputs and outputs read from the graph."""
    import onnx
    import onnxruntime as ort

    progress("checking the ONNX file")
    try:
        onnx.checker.check_model(str(plan.source))
        sess = ort.InferenceSession(str(plan.source), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ImportRefused(f"{plan.source.name} is not a loadable ONNX model: {str(exc).splitlines()[0]}") from None
    d = stage / str(first)
    d.mkdir(parents=True)
    shutil.copyfile(plan.source, d / "model.onnx")
    outs = sess.get_outputs()
    names = {i.name for i in sess.get_inputs()}
    parity: dict[str, Any] = {"note": "published as is: no source framework to compare with"}
    if plan.task == "image-classification":
        inp = sess.get_inputs()[0]
        if len(names) != 1 or len(inp.shape) != 4 or inp.shape[1] != 3:
            raise ImportRefused(f"an image classifier takes one input of shape [N, 3, H, W]; this one takes "
                                f"{[(i.name, i.shape) for i in sess.get_inputs()]}")
        size = inp.shape[-1] if isinstance(inp.shape[-1], int) else plan.image.image_size
        plan.image.image_size = size
        classes = outs[0].shape[-1]
        if isinstance(classes, int) and classes != len(plan.labels):
            raise ImportRefused(f"the model outputs {classes} classes but the labels file has {len(plan.labels)}")
        (d / "labels.txt").write_text("\n".join(plan.labels) + "\n", encoding="utf-8")
        top, tables, arrays = image_manifest(plan, classes if isinstance(classes, int) else len(plan.labels))
        arrays["inputs"][0]["name"] = inp.name
        arrays["outputs"][0]["name"] = outs[0].name
        tables["postprocessing"]["output"] = outs[0].name
        feeds = _image_feeds(size)
        return Built({first: "as given"}, parity, (top, tables, arrays), [],
                     lambda n: {inp.name: feeds(n)["pixel_values"]})
    from ml_service.modelbuild.import_text import _latency_feeds

    if not {"input_ids", "attention_mask"} <= names:
        raise ImportRefused(f"a text model needs inputs input_ids and attention_mask (it has {sorted(names)})")
    assert plan.tokenizer is not None
    write_tokenizer(plan.tokenizer, d / "tokenizer.json", plan.max_tokens)
    classifier = plan.task == "text-classification"
    if classifier:
        (d / "labels.txt").write_text("\n".join(plan.labels) + "\n", encoding="utf-8")
    dim = outs[0].shape[-1] if isinstance(outs[0].shape[-1], int) else -1
    top, tables, arrays = text_manifest(plan.task, [], {}, labels="labels.txt" if classifier else None, dim=dim,
                                        normalize=plan.normalize)
    arrays["outputs"][0]["name"] = outs[0].name
    tables["postprocessing"]["output"] = outs[0].name
    arrays["inputs"] = [a for a in arrays["inputs"] if a["name"] in names]
    base = _latency_feeds(d / "tokenizer.json")
    return Built({first: "as given"}, parity, (top, tables, arrays), [],
                 lambda n: {k: v for k, v in base(n).items() if k in names})
