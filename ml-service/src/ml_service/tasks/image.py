"""Image classification: Pillow decode, resize/crop/normalize with numpy, softmax."""

from __future__ import annotations

import base64
import binascii
import io
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ml_service.dataplane import InputInfo, Signature
from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.manifest import Manifest
from ml_service.tasks.base import Prepared, RequestBudget
from ml_service.tasks.classify import Classifier, classifier_outputs

log = logging.getLogger(__name__)
_RESAMPLE = {"bicubic": 3, "bilinear": 2, "nearest": 0}  # PIL.Image.Resampling values
_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # 16-bit (and 32-bit int) grayscale


def decode_base64(value: str, where: str) -> bytes:
    """Strict base64 (a `data:...;base64,` prefix is accepted)."""
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not valid base64") from None


def to_rgb(img: Any) -> Any:
    """An RGB copy of any decoded image, keeping the real brightness of high-bit-depth grayscale."""
    from PIL import Image

    if img.mode in _HIGH_BIT_MODES:
        arr = np.asarray(img, dtype=np.float64)
        # PNG stores 16 bits; a mode 'I' image from a 16-bit file holds 0..65535, never more
        top = 65535.0 if img.mode != "I" or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8), mode="L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


class ImageClassificationTask(Classifier):
    """Takes encoded images (base64 str or bytes) or CHW float32 arrays (`pixel_values`)."""

    name = "image-classification"
    parallel_preprocess = True

    @classmethod
    def signature(cls, manifest: Manifest, labels: Sequence[str]) -> Signature:
        lim, s = manifest.limits, manifest.preprocessing.image_size
        return Signature(
            (InputInfo("image", "BYTES", (-1,), "image", lim.max_items),
             InputInfo("pixel_values", "FP32", (-1, 3, s, s), "pixels",
                       min(lim.max_items * 3 * s * s, lim.max_tensor_elements))),
            classifier_outputs(labels), "classification")

    @classmethod
    def working_set_bytes(cls, manifest: Manifest) -> int:
        # a CNN's activations at 224 px are ~16x its float32 input (EfficientNet-Lite0: ~9.5 MB an image)
        s = manifest.preprocessing.image_size
        return manifest.batching.max_batch_size * 3 * s * s * 4 * 16

    def warmup_items(self) -> list[Any]:
        size = self.manifest.preprocessing.image_size
        return [np.zeros((3, size, size), dtype=np.float32)] * self.manifest.batching.max_batch_size

    def check_item(self, item: Any, where: str) -> None:
        if isinstance(item, np.ndarray):
            size = self.manifest.preprocessing.image_size
            if item.shape != (3, size, size):
                raise InvalidInput(f"{where} must have shape [3, {size}, {size}], got {list(item.shape)}")
            if not np.isfinite(item).all():
                raise InvalidInput(f"{where} holds NaN or infinite values")
            return
        if not isinstance(item, (str, bytes)):
            raise InvalidInput(f"{where} must be a base64-encoded image string, got {type(item).__name__}")
        # base64 is 4/3 of the bytes it holds
        n = len(item) * 3 // 4 if isinstance(item, str) else len(item)
        if n > self.limits.max_image_bytes:
            raise PayloadTooLarge(f"{where} is about {n} bytes; the limit is {self.limits.max_image_bytes}")
        if n == 0:
            raise InvalidInput(f"{where} is empty")

    def _decode(self, item: str | bytes, budget: RequestBudget, where: str) -> np.ndarray:
        from PIL import Image, ImageOps, UnidentifiedImageError

        raw = decode_base64(item, where) if isinstance(item, str) else item
        pre, lim = self.manifest.preprocessing, self.limits
        short = pre.resize or pre.image_size
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                src = Image.open(io.BytesIO(raw), formats=("JPEG", "PNG", "WEBP"))
                w, h = src.size
                scale = short / min(w, h)
                nw, nh = max(short, round(w * scale)), max(short, round(h * scale))
                # the resize before the crop would hold nw*nh pixels: a thin image must not blow it up
                if max(w * h, nw * nh) > lim.max_image_pixels:
                    raise PayloadTooLarge(f"{where} has {w}x{h} pixels (resized: {nw}x{nh}); the limit is "
                                          f"{lim.max_image_pixels} pixels")
                if not budget.take_pixels(w * h):
                    raise PayloadTooLarge(f"the request's images hold more than {lim.max_request_pixels} pixels "
                                          "in all (limits.max_request_pixels); send fewer or smaller images")
                # phones store the rotation in EXIF (0x0112: Orientation); 1 means upright
                img = ImageOps.exif_transpose(src) if src.getexif().get(0x0112, 1) != 1 else src
                img = to_rgb(img)
        except PayloadTooLarge:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise PayloadTooLarge(f"{where} declares more pixels than the limit of {lim.max_image_pixels} "
                                  "(a decompression bomb); it was not decoded") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise InvalidInput(f"{where} is not a readable JPEG, PNG or WebP image") from None
        if img.size != (w, h):  # rotated by 90 degrees: the short side changed
            w, h = img.size
            nw, nh = max(short, round(w * short / min(w, h))), max(short, round(h * short / min(w, h)))
        img = img.resize((nw, nh), resample=Image.Resampling(_RESAMPLE[pre.interpolation]))
        size = pre.image_size
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
        pixels = np.asarray(img, dtype=np.float32)
        norm: np.ndarray = (pixels - np.asarray(pre.mean, dtype=np.float32)) / np.asarray(pre.std, dtype=np.float32)
        return np.ascontiguousarray(norm.transpose(2, 0, 1))

    def preprocess(self, items: Sequence[Any], budgets: Sequence[RequestBudget] | None = None
                   ) -> list[Prepared | Exception]:
        out: list[Prepared | Exception] = []
        for i, item in enumerate(items):
            budget = budgets[i] if budgets is not None else self.new_budget()
            try:
                arr = item if isinstance(item, np.ndarray) else self._decode(item, budget, "an image")
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
