"""Image classification: Pillow decode, resize/crop/normalize with numpy, softmax, labels, top-k."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.tasks.base import ItemResult, Options, Prepared
from ml_service.tasks.classify import Classifier, classification_entry

log = logging.getLogger(__name__)
_RESAMPLE = {"bicubic": 3, "bilinear": 2, "nearest": 0}  # PIL.Image.Resampling values


def decode_base64(value: str, where: str) -> bytes:
    """Strict base64 (a `data:...;base64,` prefix is accepted)."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not valid base64") from None


class ImageClassificationTask(Classifier):
    """Takes base64 strings (seed API), raw bytes (V2 BYTES) or CHW float32 arrays (V2 pixel_values)."""

    name = "image-classification"
    parallel_preprocess = True
    data_keys = ("image", "images")

    def warmup_items(self) -> list[Any]:
        size = self.manifest.preprocessing.image_size
        return [np.zeros((3, size, size), dtype=np.float32)]

    def check_item(self, item: Any, where: str) -> None:
        if isinstance(item, np.ndarray):
            size = self.manifest.preprocessing.image_size
            if item.shape != (3, size, size):
                raise InvalidInput(f"{where} must have shape [3, {size}, {size}], got {list(item.shape)}")
            return
        if not isinstance(item, (str, bytes)):
            raise InvalidInput(f"{where} must be a base64-encoded image string, got {type(item).__name__}")
        # base64 is 4/3 of the bytes it holds
        n = len(item) * 3 // 4 if isinstance(item, str) else len(item)
        if n > self.limits.max_image_bytes:
            raise PayloadTooLarge(f"{where} is about {n} bytes; the limit is {self.limits.max_image_bytes}")
        if n == 0:
            raise InvalidInput(f"{where} is empty")

    def _decode(self, item: str | bytes, where: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        raw = decode_base64(item, where) if isinstance(item, str) else item
        pre = self.manifest.preprocessing
        short = pre.resize or pre.image_size
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                src = Image.open(io.BytesIO(raw), formats=("JPEG", "PNG", "WEBP"))
                w, h = src.size
                scale = short / min(w, h)
                nw, nh = max(short, round(w * scale)), max(short, round(h * scale))
                # the resize before the crop would hold nw*nh pixels: a thin image must not blow it up
                if max(w * h, nw * nh) > self.limits.max_image_pixels:
                    raise PayloadTooLarge(
                        f"{where} has {w}x{h} pixels (resized: {nw}x{nh}); the limit is "
                        f"{self.limits.max_image_pixels} pixels"
                    )
                img = src.convert("RGB")
        except PayloadTooLarge:
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombWarning,
                Image.DecompressionBombError):
            raise InvalidInput(f"{where} is not a readable JPEG, PNG or WebP image") from None
        img = img.resize((nw, nh), resample=Image.Resampling(_RESAMPLE[pre.interpolation]))
        size = pre.image_size
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        pixels = np.asarray(img, dtype=np.float32)
        norm: np.ndarray = (pixels - np.asarray(pre.mean, dtype=np.float32)) / np.asarray(pre.std, dtype=np.float32)
        return np.ascontiguousarray(norm.transpose(2, 0, 1))

    def preprocess(self, items: Sequence[Any]) -> list[Prepared | Exception]:
        out: list[Prepared | Exception] = []
        for item in items:
            try:
                arr = item if isinstance(item, np.ndarray) else self._decode(item, "an image")
                out.append(Prepared(arr.astype(np.float32, copy=False)))
            except (InvalidInput, PayloadTooLarge) as exc:
                out.append(exc)
            except Exception:  # anything else Pillow raises is this image's problem, not the batch's
                log.warning("image decoding failed", exc_info=True)
                out.append(InvalidInput("an image could not be decoded as JPEG, PNG or WebP"))
        return out

    def collate(self, batch: Sequence[Prepared]) -> dict[str, np.ndarray]:
        name = self.manifest.inputs[0].name if self.manifest.inputs else "pixel_values"
        return {name: np.stack([p.features for p in batch])}

    def format_seed(self, result: ItemResult, options: Options) -> dict[str, Any]:
        return classification_entry(result.outputs["probabilities"], self.labels, options.top_k)
