"""`models import`: what a source on disk is, and the refusals, decided before anything is built or written.

Reads only JSON and safetensors headers (no torch): a refused import costs a fraction of a second."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

#: `model_type`s of text checkpoints the export supports: the service feeds input_ids, attention_mask and
#: token_type_ids, and the ORT optimizer's "bert" fusions apply
TEXT_TYPES = ("bert",)
#: `model_type`s of Transformers image classifiers (`*ForImageClassification`) the export supports
IMAGE_TYPES = ("vit", "deit", "convnext", "resnet", "mobilenet_v2", "regnet")
#: architecture names of image state dicts, built by efficientnet-lite-pytorch
STATE_DICT_ARCHS = tuple(f"efficientnet-lite{i}" for i in range(5))
TASKS = ("text-classification", "embedding", "image-classification")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
CONVERT_HINT = ("convert it to safetensors where you trust the file, e.g. `python -c \"from transformers import "
                "AutoModel; AutoModel.from_pretrained('DIR').save_pretrained('OUT')\"` (save_pretrained writes "
                "model.safetensors), or `safetensors.torch.save_file(state_dict, 'model.safetensors')`")

Kind = Literal["text-classifier", "text-embedding", "hf-image", "state-dict-image", "onnx"]


class ImportRefused(Exception):
    """A source that is not imported, with the one-line reason the user sees."""


@dataclass
class ImageOptions:
    """Image preprocessing: short side resized to `resize`, center crop `image_size`, `(x - mean) / std` on 0-255."""

    image_size: int = 224
    resize: int | None = 256
    interpolation: str = "bicubic"
    mean: list[float] = field(default_factory=lambda: [123.675, 116.28, 103.53])
    std: list[float] = field(default_factory=lambda: [58.395, 57.12, 57.375])


@dataclass
class ImportOptions:
    """What the user says about a source that it does not say itself."""

    arch: str | None = None
    labels_file: Path | None = None
    task: str | None = None
    tokenizer: Path | None = None
    pooling: str | None = None  # mean | cls: overrides the checkpoint's
    normalize: bool | None = None
    image: ImageOptions | None = None


@dataclass
class Plan:
    """A source as understood: what it becomes and everything the build needs to know about it."""

    kind: Kind
    source: Path
    task: str
    architecture: str
    weights: Path  # the file whose sha256 the card records
    config: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    model_dir: Path | None = None  # the Transformers directory (a sentence-transformers' Transformer module)
    tokenizer: Path | None = None  # a tokenizer.json, or the directory to convert one from (vocab.txt)
    pooling: str = "mean"
    normalize: bool = True
    max_tokens: int = 256
    image: ImageOptions = field(default_factory=ImageOptions)


@dataclass
class Built:
    """What a builder staged: version number -> precision, the parity figures, the model.toml of a new model
    (top level, tables, tensors; the card is the importer's), notes for the user, and inputs of a batch of n
    (for the card's latency)."""

    versions: dict[int, str]
    parity: dict[str, Any]
    manifest: tuple[dict[str, Any], ...]
    notes: list[str]
    feeds: Callable[[int], dict[str, np.ndarray]]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors a safetensors file declares (name -> dtype, shape, offsets); refused when the file is not
    safetensors or is shorter than its header says (truncated)."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > size - 8 or n > 100_000_000:
                raise ValueError("header length past the end")
            header: dict[str, Any] = json.loads(f.read(n))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{path} is not a readable safetensors file ({exc})") from None
    header.pop("__metadata__", None)
    need = max((int(t["data_offsets"][1]) for t in header.values()), default=0)
    if 8 + n + need > size:
        raise ImportRefused(f"{path} is truncated: its header declares {8 + n + need:,} bytes, the file has "
                            f"{size:,}; copy it again")
    return header


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImportRefused(f"{path} is not readable JSON ({exc})") from None


def read_labels(path: Path | None, what: str) -> list[str]:
    if path is None:
        raise ImportRefused(f"{what} needs its labels: give --labels FILE (one label a line, in output order)")
    try:
        labels = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"labels file {path} is not readable ({exc})") from None
    if not labels:
        raise ImportRefused(f"labels file {path} is empty")
    return labels


def _supported() -> str:
    return (f"supported: Transformers directories of {', '.join(TEXT_TYPES)} encoders (*ForSequenceClassification, "
            f"a bare encoder, or a sentence-transformers directory), *ForImageClassification of "
            f"{', '.join(IMAGE_TYPES)}, safetensors state dicts of {', '.join(STATE_DICT_ARCHS)} (--arch), and ONNX "
            f"files (--task)")


def detect(source: Path, opts: ImportOptions) -> Plan:
    """What `source` is and becomes, or ImportRefused with the reason."""
    if not source.exists():
        raise ImportRefused(f"{source} does not exist")
    if source.is_file():
        return _detect_file(source, opts)
    return _detect_dir(source, opts)


def _detect_file(source: Path, opts: ImportOptions) -> Plan:
    suffix = source.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ImportRefused(f"{source.name} is a pickle checkpoint, which can run code when loaded and is never "
                            f"loaded here: {CONVERT_HINT}")
    if suffix == ".onnx":
        return _detect_onnx(source, opts)
    if suffix != ".safetensors":
        raise ImportRefused(f"{source.name}: unknown kind of file; {_supported()}")
    if not opts.arch:
        raise ImportRefused(f"{source.name} is a state dict: give its architecture with --arch "
                            f"({', '.join(STATE_DICT_ARCHS)})")
    if opts.arch not in STATE_DICT_ARCHS:
        raise ImportRefused(f"unknown architecture {opts.arch!r}; {_supported()}")
    header = safetensors_header(source)
    labels = read_labels(opts.labels_file, "an image classifier from a state dict")
    if "_fc.weight" not in header:
        raise ImportRefused(f"{source.name} is not an {opts.arch} state dict (no _fc.weight, the classifier layer)")
    outputs = header["_fc.weight"]["shape"][0]
    if outputs != len(labels):
        raise ImportRefused(f"the labels file has {len(labels)} labels but the weights' output (_fc.weight) has "
                            f"{outputs} classes")
    return Plan("state-dict-image", source, "image-classification", opts.arch, source, labels=labels,
                image=opts.image or ImageOptions())


def _detect_onnx(source: Path, opts: ImportOptions) -> Plan:
    if opts.task not in TASKS:
        raise ImportRefused(f"an ONNX file needs its task: --task {' | '.join(TASKS)}")
    plan = Plan("onnx", source, opts.task, "onnx", source, image=opts.image or ImageOptions())
    if opts.task != "embedding":
        plan.labels = read_labels(opts.labels_file, f"a {opts.task} model")
    if opts.task != "image-classification":
        tok = opts.tokenizer
        if tok is None or not tok.is_file():
            raise ImportRefused(f"a {opts.task} model needs its tokenizer: --tokenizer tokenizer.json")
        plan.tokenizer = tok
        plan.normalize = True if opts.normalize is None else opts.normalize
    return plan


def _weights(d: Path) -> Path:
    st = d / "model.safetensors"
    if st.is_file():
        return st
    if (d / "model.safetensors.index.json").is_file():
        raise ImportRefused(f"{d} holds a sharded checkpoint (model.safetensors.index.json); save it as one file "
                            "with save_pretrained(..., max_shard_size='100GB')")
    pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ImportRefused(f"{d} has only {', '.join(pickles)} (a pickle, which can run code when loaded and is "
                            f"never loaded here) and no model.safetensors: {CONVERT_HINT}")
    raise ImportRefused(f"{d} has no model.safetensors")


def _detect_dir(source: Path, opts: ImportOptions) -> Plan:
    modules = source / "modules.json"
    model_dir = source
    st_pooling: dict[str, Any] | None = None
    st_normalize = False
    if modules.is_file():  # sentence-transformers: a Transformer module, its pooling, maybe Normalize
        mods = _read_json(modules)
        for m in mods if isinstance(mods, list) else []:
            kind = str(m.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Transformer":
                model_dir = source / str(m.get("path", ""))
            elif kind == "Pooling":
                st_pooling = _read_json(source / str(m.get("path", "")) / "config.json")
            elif kind == "Normalize":
                st_normalize = True
            else:
                raise ImportRefused(f"sentence-transformers module {kind!r} is not supported (Transformer, Pooling "
                                    "and Normalize are)")
    if not (model_dir / "config.json").is_file():
        raise ImportRefused(f"{model_dir} has no config.json: not a Transformers checkpoint; {_supported()}")
    config: dict[str, Any] = _read_json(model_dir / "config.json")
    weights = _weights(model_dir)
    header = safetensors_header(weights)
    archs = [str(a) for a in config.get("architectures") or []]
    arch = archs[0] if archs else str(config.get("model_type", "?"))
    mtype = str(config.get("model_type", ""))
    if arch.endswith("ForImageClassification"):
        if mtype not in IMAGE_TYPES:
            raise ImportRefused(f"unknown architecture {arch} (model_type {mtype!r}); {_supported()}")
        return _hf_image(source, model_dir, config, arch, weights, header, opts)
    if mtype not in TEXT_TYPES or not (arch.endswith(("ForSequenceClassification", "Model", "ForMaskedLM",
                                                      "ForPreTraining"))):
        raise ImportRefused(f"unknown architecture {arch} (model_type {mtype!r}); {_supported()}")
    plan = Plan("text-embedding", source, "embedding", arch, weights, config=config, model_dir=model_dir)
    plan.tokenizer = _tokenizer(source, model_dir, opts)
    plan.max_tokens = min(256, int(config.get("max_position_embeddings", 512)))
    if arch.endswith("ForSequenceClassification") and st_pooling is None:
        plan.kind, plan.task = "text-classifier", "text-classification"
        plan.labels = _id2label(config, header)
    else:
        if st_pooling is not None:
            plan.pooling = _st_pooling(st_pooling)
            st_conf = model_dir / "sentence_bert_config.json"
            if st_conf.is_file():
                plan.max_tokens = min(plan.max_tokens, int(_read_json(st_conf).get("max_seq_length", 256)))
        plan.normalize = st_normalize if st_pooling is not None else False
        plan.pooling = opts.pooling or plan.pooling
        plan.normalize = plan.normalize if opts.normalize is None else opts.normalize
    return plan


def _st_pooling(conf: dict[str, Any]) -> str:
    modes = [k.removeprefix("pooling_mode_") for k, v in conf.items() if k.startswith("pooling_mode_") and v]
    named = {"mean": "mean_tokens", "cls": "cls_token"}.get(str(conf.get("pooling_mode", "")))
    modes = modes or ([named] if named else [])
    if modes == ["mean_tokens"]:
        return "mean"
    if modes == ["cls_token"]:
        return "cls"
    raise ImportRefused(f"sentence-transformers pooling {modes} is not supported (mean_tokens or cls_token are)")


def _tokenizer(source: Path, model_dir: Path, opts: ImportOptions) -> Path:
    if opts.tokenizer is not None:
        if not opts.tokenizer.is_file():
            raise ImportRefused(f"tokenizer {opts.tokenizer} does not exist")
        return opts.tokenizer
    for d in (model_dir, source):
        if (d / "tokenizer.json").is_file():
            return d / "tokenizer.json"
        if (d / "vocab.txt").is_file():
            return d  # a WordPiece vocabulary: the build converts it to tokenizer.json
    raise ImportRefused(f"{source} has no tokenizer (tokenizer.json or vocab.txt); copy the checkpoint's tokenizer "
                        "files beside config.json or give --tokenizer tokenizer.json")


def _output_rows(header: dict[str, Any]) -> int | None:
    """Rows of the classification layer's weight, from the safetensors header."""
    names = [k for k, v in header.items() if "classifier" in k and k.endswith("weight") and len(v["shape"]) == 2]
    return int(header[names[-1]]["shape"][0]) if names else None


def _id2label(config: dict[str, Any], header: dict[str, Any]) -> list[str]:
    raw = config.get("id2label") or {}
    try:
        labels = [str(raw[k]) for k in sorted(raw, key=int)]
    except ValueError:
        raise ImportRefused("config.json's id2label keys are not class numbers") from None
    rows = _output_rows(header)
    if rows is not None and rows != len(labels):
        raise ImportRefused(f"config.json's id2label has {len(labels)} labels but the classifier outputs {rows} "
                            "classes; fix id2label (one entry per output)")
    if sorted(int(k) for k in raw) != list(range(len(labels))):
        raise ImportRefused("config.json's id2label must number the classes 0..N-1")
    return labels


def _hf_image(source: Path, model_dir: Path, config: dict[str, Any], arch: str, weights: Path,
              header: dict[str, Any], opts: ImportOptions) -> Plan:
    pre_path = model_dir / "preprocessor_config.json"
    if opts.image is not None:
        image = opts.image
    elif pre_path.is_file():
        image = _hf_preprocessing(_read_json(pre_path))
    else:
        raise ImportRefused(f"{model_dir} has no preprocessor_config.json; give the preprocessing as options "
                            "(--image-size, --resize, --mean, --std)")
    return Plan("hf-image", source, "image-classification", arch, weights, config=config,
                labels=_id2label(config, header), model_dir=model_dir, image=image)


def _hf_preprocessing(pre: dict[str, Any]) -> ImageOptions:
    """The service's preprocessing (short side, center crop, mean/std on 0-255) from a Transformers image
    processor's config. A squashing resize to height x width is served as short side + center crop."""
    def edge(v: Any) -> int | None:
        if isinstance(v, int):
            return v
        if isinstance(v, dict):
            got = v.get("shortest_edge") or v.get("height")
            return int(got) if got else None
        return None

    size = edge(pre.get("size")) or 224
    crop = edge(pre.get("crop_size")) if pre.get("do_center_crop", True) else None
    scale = float(pre.get("rescale_factor", 1 / 255)) if pre.get("do_rescale", True) else 1.0
    mean = [float(m) / scale for m in pre.get("image_mean", [0.5, 0.5, 0.5])]
    std = [float(s) / scale for s in pre.get("image_std", [0.5, 0.5, 0.5])]
    if not pre.get("do_normalize", True):
        mean, std = [0.0] * 3, [1 / scale] * 3
    interp = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(pre.get("resample", 2)), "bilinear")
    if crop:
        return ImageOptions(crop, size if size >= crop else None, interp, mean, std)
    return ImageOptions(size, None, interp, mean, std)
