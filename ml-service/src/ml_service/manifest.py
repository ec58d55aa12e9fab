"""`model.toml`: what a model directory declares, validated with pydantic."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ml_service.errors import ManifestError

TaskName = Literal["embedding", "text-classification", "image-classification", "tensor"]
RuntimeName = Literal["onnx", "openvino", "torchscript", "fake"]
DType = Literal[
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "float32", "float64", "string",
]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One named input or output tensor; -1 marks a variable dimension."""

    name: str = Field(min_length=1, max_length=128)
    dtype: DType
    shape: list[int]

    @field_validator("shape")
    @classmethod
    def _dims(cls, v: list[int]) -> list[int]:
        if any(d < -1 or d == 0 for d in v):
            raise ValueError("dimensions must be positive, or -1 for a variable dimension")
        return v


class Preprocessing(_Strict):
    """How raw inputs become tensors."""

    tokenizer: str | None = None
    max_tokens: int = Field(default=256, ge=1, le=8192)
    image_size: int = Field(default=224, ge=8, le=4096)
    resize: int | None = Field(default=None, ge=8, le=8192, description="short side before the center crop")
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    mean: list[float] = [0.0, 0.0, 0.0]
    std: list[float] = [1.0, 1.0, 1.0]

    @field_validator("mean", "std")
    @classmethod
    def _three(cls, v: list[float]) -> list[float]:
        if len(v) != 3:
            raise ValueError("needs three values, one per RGB channel")
        return v


class Postprocessing(_Strict):
    """How runtime outputs become answers."""

    output: str | None = Field(default=None, description="the output tensor to read; default the first")
    softmax: bool = Field(default=True, description="apply softmax to the output (false if it holds probabilities)")
    normalize: bool = Field(default=True, description="L2-normalize embeddings")


class Batching(_Strict):
    """Dynamic batching knobs for one model version."""

    max_batch_size: int = Field(default=32, ge=1, le=4096)
    max_batch_tokens: int = Field(default=16384, ge=1)
    max_queue_delay_ms: float = Field(default=2.0, ge=0, le=10_000)
    max_queue_size: int = Field(default=1024, ge=1)
    window_factor: int = Field(default=4, ge=1, le=64, description="items gathered per window, in batches")
    target_wait_ms: float | None = Field(default=None, ge=0, le=600_000, description=(
        "the most an accepted request should wait once the queue stands; default ML_SERVICE_TARGET_WAIT_MS; 0: only "
        "the deadline bounds the wait (batch work)"))


class Limits(_Strict):
    """Hard limits on what one request may send to this model."""

    max_items: int = Field(default=256, ge=1)
    max_text_chars: int = Field(default=50_000, ge=1)
    max_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1, description="decoded pixels of one image")
    max_request_pixels: int = Field(default=160_000_000, ge=1, description="decoded pixels of one request's images")
    max_tensor_elements: int = Field(default=16_000_000, ge=1)


class Card(_Strict):
    """A short model card: where the model comes from and how good it is."""

    model_config = ConfigDict(extra="allow", frozen=True)
    source: str = ""
    license: str = ""
    purpose: str = ""
    accuracy: str = ""


class VersionOverride(_Strict):
    """What one version does differently from the model's defaults."""

    file: str | None = None
    encoder: str | None = None
    encoder_version: int | None = Field(default=None, ge=1)
    card: dict[str, str] = Field(default_factory=dict)


VersionPolicy = Annotated[
    Literal["latest", "all"] | Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)],
    Field(description="which versions are served"),
]


class Manifest(_Strict):
    """The validated contents of `<name>/model.toml`."""

    task: TaskName
    runtime: RuntimeName = "onnx"
    file: str = Field(default="model.onnx", description="the model file inside each version directory")
    aliases: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = []
    version_policy: VersionPolicy = "latest"
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    labels: str | None = Field(default=None, description="labels file, one per line, in the model directory")
    preprocessing: Preprocessing = Preprocessing()
    postprocessing: Postprocessing = Postprocessing()
    batching: Batching = Batching()
    limits: Limits = Limits()
    card: Card = Card()
    fake: dict[str, float | int | str] = Field(default_factory=dict, description="fake runtime knobs (tests)")
    encoder: str | None = Field(
        default=None, pattern=NAME_PATTERN,
        description="an embedding model whose output feeds this one: `file` is then a head taking `embedding`",
    )
    encoder_version: int | None = Field(default=None, ge=1, description="the encoder's version; default its own")
    versions: dict[str, VersionOverride] = Field(default_factory=dict, description="per-version overrides")

    def for_version(self, version: int) -> Manifest:
        """This manifest with one version's overrides applied."""
        o = self.versions.get(str(version))
        if o is None:
            return self
        updates = {k: v for k, v in o.model_dump(exclude={"card"}).items() if v is not None}
        return self.model_copy(update=updates)

    @model_validator(mode="after")
    def _task_needs(self) -> Manifest:
        if self.task in ("embedding", "text-classification") and not self.preprocessing.tokenizer:
            raise ValueError(f"task {self.task!r} needs preprocessing.tokenizer (a tokenizer.json file)")
        if self.task in ("text-classification", "image-classification") and not self.labels:
            raise ValueError(f"task {self.task!r} needs a labels file")
        if self.task == "tensor" and (not self.inputs or not self.outputs):
            raise ValueError("task 'tensor' needs its inputs and outputs declared")
        for f in [self.file] + [o.file for o in self.versions.values() if o.file]:
            if ".." in Path(f).parts or Path(f).is_absolute():
                raise ValueError("file must be a plain name inside the version directory")
        bad = [k for k in self.versions if not k.isdigit() or int(k) < 1]
        if bad:
            raise ValueError(f"versions keys must be version numbers, got {bad}")
        heads = [self.encoder] + [o.encoder for o in self.versions.values()]
        if any(heads) and self.task != "text-classification":
            raise ValueError("only text-classification models can be heads on an encoder")
        return self


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_manifest(path: Path) -> Manifest:
    """Read and validate one `model.toml`; raise ManifestError with a message that says what to fix."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError("model.toml is missing") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"model.toml is not valid TOML: {exc}") from exc
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(f"model.toml is invalid: {_format_validation_error(exc)}") from exc
