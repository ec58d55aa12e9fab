"""Image classification preprocessing: decode, resize, center crop, normalize; bad images."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from ml_service.errors import InvalidInput, PayloadTooLarge

from .conftest import native_items, native_output

LABELS = ["red", "green", "blue"]


def _manifest(image_size=32, resize=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **limits):
    pre = {"image_size": image_size, "mean": list(mean), "std": list(std), "interpolation": "bilinear"}
    if resize:
        pre["resize"] = resize
    return {"task": "image-classification", "labels": "labels.txt", "preprocessing": pre,
            "limits": {"max_items": 4, "max_image_bytes": 100_000, "max_image_pixels": 1_000_000, **limits}}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _stripes(size, fmt="PNG"):
    """Three vertical stripes: red, green, blue (left to right)."""
    w, h = size
    img = Image.new("RGB", size)
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        img.paste(color, (i * w // 3, 0, (i + 1) * w // 3, h))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "kw", "tol"), [("PNG", {}, 0), ("JPEG", {"quality": 95}, 4),
                                                  ("WEBP", {"lossless": True}, 0), ("WEBP", {"quality": 90}, 6)])
def test_decodes_png_jpeg_webp(make_task, make_image, fmt, kw, tol):
    task = make_task(_manifest(), labels=LABELS)
    data = make_image(fmt, (40, 40), (200, 100, 50), **kw)
    for item in (_b64(data), data, f"data:image/{fmt.lower()};base64,{_b64(data)}"):
        (p,) = task.preprocess([item])
        assert not isinstance(p, Exception), p
        assert p.features.shape == (3, 32, 32)
        assert p.features.dtype == np.float32
        for channel, value in enumerate((200, 100, 50)):
            assert np.abs(p.features[channel] - value).max() <= tol


def test_normalization_uses_mean_and_std(make_task, make_image):
    task = make_task(_manifest(mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0)), labels=LABELS)
    (p,) = task.preprocess([make_image("PNG", (32, 32), (255, 0, 127))])
    np.testing.assert_allclose(p.features[:, 5, 5], [1.0, -127 / 128, 0.0], rtol=1e-6)


def test_grayscale_and_rgba_become_rgb(make_task):
    task = make_task(_manifest(), labels=LABELS)
    for mode, color in (("L", 90), ("RGBA", (10, 20, 30, 128)), ("P", 3)):
        buf = io.BytesIO()
        Image.new(mode, (33, 35), color).save(buf, format="PNG")
        (p,) = task.preprocess([buf.getvalue()])
        assert p.features.shape == (3, 32, 32)


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (32, 32), (16, 12), (1000, 40)])
def test_resize_short_side_then_center_crop(make_task, make_image, size):
    task = make_task(_manifest(image_size=32), labels=LABELS)
    (p,) = task.preprocess([make_image("PNG", size, (0, 0, 255))])
    assert p.features.shape == (3, 32, 32)
    np.testing.assert_allclose(p.features[2], 255.0, atol=1)


def test_center_crop_keeps_the_middle(make_task):
    # 96x64 -> short side already 64: crop x in [16, 80): red cols 0..15, green 16..47, blue 48..63
    task = make_task(_manifest(image_size=64), labels=LABELS)
    (p,) = task.preprocess([_stripes((96, 64))])
    rgb = p.features.transpose(1, 2, 0)
    np.testing.assert_allclose(rgb[32, 4], [255, 0, 0], atol=1)
    np.testing.assert_allclose(rgb[32, 32], [0, 255, 0], atol=1)
    np.testing.assert_allclose(rgb[32, 60], [0, 0, 255], atol=1)


def test_resize_before_crop(make_task):
    # resize = 128: the 300x200 stripes become 192x128; the 64 crop is the green middle stripe (edges blend)
    task = make_task(_manifest(image_size=64, resize=128), labels=LABELS)
    (p,) = task.preprocess([_stripes((300, 200))])
    assert p.features.shape == (3, 64, 64)
    np.testing.assert_allclose(p.features.transpose(1, 2, 0)[[0, 32, 63]][:, [4, 32, 59]],
                               np.broadcast_to([0, 255, 0], (3, 3, 3)), atol=2)


def test_one_bad_item_does_not_fail_the_others(make_task, make_image):
    task = make_task(_manifest(), labels=LABELS)
    good = _b64(make_image("PNG", (32, 32), (1, 2, 3)))
    out = task.preprocess([good, "%%%not base64%%%", _b64(b"just some bytes, not an image"), good])
    assert not isinstance(out[0], Exception)
    assert not isinstance(out[3], Exception)
    assert isinstance(out[1], InvalidInput) and "not valid base64" in out[1].message
    assert isinstance(out[2], InvalidInput) and "is not a readable" in out[2].message


@pytest.mark.parametrize("bad", ["abc", "ab$=", "aGVsbG8", "data:image/png;base64,@@@@"])
def test_bad_base64(make_task, bad):
    task = make_task(_manifest(), labels=LABELS)
    (out,) = task.preprocess([bad])
    assert isinstance(out, InvalidInput)


def test_truncated_image_is_invalid(make_task, make_image):
    task = make_task(_manifest(), labels=LABELS)
    data = make_image("PNG", (64, 64), (9, 9, 9))
    (out,) = task.preprocess([data[: len(data) // 2]])
    assert isinstance(out, InvalidInput)
    (out,) = task.preprocess([make_image("JPEG", (64, 64))[:40]])
    assert isinstance(out, InvalidInput)


def test_too_many_pixels(make_task, make_image):
    task = make_task(_manifest(max_image_pixels=2500), labels=LABELS)
    (ok,) = task.preprocess([make_image("PNG", (50, 50))])
    assert not isinstance(ok, Exception)
    (out,) = task.preprocess([make_image("PNG", (51, 50))])
    assert isinstance(out, PayloadTooLarge)
    assert "51x50" in out.message
    assert out.status_code == 413


def test_check_item(make_task):
    task = make_task(_manifest(max_image_bytes=300), labels=LABELS)
    task.check_item("A" * 400, "data.image")  # base64 of 300 bytes
    task.check_item(np.zeros((3, 32, 32), dtype=np.float32), "x")
    with pytest.raises(PayloadTooLarge):
        task.check_item("A" * 404, "data.image")
    with pytest.raises(PayloadTooLarge):
        task.check_item(b"x" * 301, "data.image")
    with pytest.raises(InvalidInput, match="is empty"):
        task.check_item("", "data.image")
    for bad in (3, None, ["a"], {"b64": "a"}):
        with pytest.raises(InvalidInput, match="base64-encoded image string"):
            task.check_item(bad, "data.image")
    with pytest.raises(InvalidInput, match=r"shape \[3, 32, 32\]"):
        task.check_item(np.zeros((3, 16, 16), dtype=np.float32), "x")


def test_parse_seed(make_task):
    task = make_task(_manifest(), labels=LABELS)
    assert native_items(task, {"image": "QUJD"}) == (["QUJD"], (3))
    assert native_items(task, {"images": ["QUJD", "QUJD"], "top_k": 2}) == (["QUJD", "QUJD"], (2))
    with pytest.raises(InvalidInput, match="'image' or 'images'"):
        native_items(task, {"text": "a"})
    with pytest.raises(InvalidInput, match=r"data.images\[1\]"):
        native_items(task, {"images": ["QUJD", 5]})
    with pytest.raises(InvalidInput, match="top_k"):
        native_items(task, {"image": "QUJD", "top_k": 4})
    with pytest.raises(PayloadTooLarge):
        native_items(task, {"images": ["QUJD"] * 5})


def test_collate_and_postprocess(make_task, make_image):
    task = make_task({**_manifest(), "inputs": [{"name": "pixels", "dtype": "float32", "shape": [-1, 3, 32, 32]}]},
                     labels=LABELS)
    batch = task.preprocess([make_image("PNG", (32, 32), (255, 0, 0)), make_image("PNG", (32, 32), (0, 0, 255))])
    feeds = task.collate(batch)
    assert list(feeds) == ["pixels"]
    assert feeds["pixels"].shape == (2, 3, 32, 32)
    logits = feeds["pixels"].mean(axis=(2, 3))
    rows = task.postprocess({"logits": logits}, feeds, batch)
    assert [native_output(task, _result(r), 1)["label"] for r in rows] == ["red", "blue"]


def _result(row):
    from ml_service.tasks import ItemResult

    return ItemResult(row, {})


def test_a_thin_image_cannot_blow_up_the_resize(make_task, make_image):
    # 2,000 source pixels, but resizing its short side (1 px) to 32 would make 32 x 64,000 pixels
    task = make_task(_manifest(), labels=LABELS)
    (out,) = task.preprocess([make_image("PNG", (1, 2000))])
    assert isinstance(out, PayloadTooLarge) and out.status_code == 413
    assert "resized" in out.message
    (ok,) = task.preprocess([make_image("PNG", (10, 300))])  # 32 x 960 after the resize: fine
    assert not isinstance(ok, Exception) and ok.features.shape == (3, 32, 32)


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF"])
def test_only_jpeg_png_webp_are_decoded(make_task, make_image, fmt):
    task = make_task(_manifest(), labels=LABELS)
    (out,) = task.preprocess([make_image(fmt, (40, 40))])
    assert isinstance(out, InvalidInput) and "JPEG, PNG or WebP" in out.message


# -- issue 9: bit depth, orientation, bombs, NaN, the per-request pixel budget ------------------------

def test_16_bit_grayscale_keeps_its_brightness(make_task):
    task = make_task(_manifest(), labels=LABELS)
    for level in (0, 0x4000, 0x8000, 0xFFFF):  # 16-bit mid-grey must not become white
        buf = io.BytesIO()
        Image.fromarray(np.full((40, 40), level, dtype=np.uint16)).save(buf, format="PNG")
        assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
        (p,) = task.preprocess([buf.getvalue()])
        np.testing.assert_allclose(p.features, round(level / 257), atol=1)


def test_exif_orientation_is_applied(make_task):
    task = make_task(_manifest(image_size=30, resize=30), labels=LABELS)
    upright = Image.open(io.BytesIO(_stripes((30, 60)))).convert("RGB")  # stripes left to right
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a phone held sideways writes: 60 x 30 ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    stored.save(buf, format="PNG", exif=exif.tobytes())
    (rotated,) = task.preprocess([buf.getvalue()])
    buf = io.BytesIO()
    upright.save(buf, format="PNG")
    (plain,) = task.preprocess([buf.getvalue()])
    np.testing.assert_allclose(rotated.features, plain.features)


def test_a_decompression_bomb_is_413_and_says_why(make_task):
    task = make_task(_manifest(), labels=LABELS)
    buf = io.BytesIO()
    Image.new("1", (20_000, 10_000)).save(buf, format="PNG")  # 200 MP in a few kB
    (out,) = task.preprocess([buf.getvalue()])
    assert isinstance(out, PayloadTooLarge) and out.status_code == 413
    assert "pixels" in out.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixel_values_are_invalid(make_task, bad):
    task = make_task(_manifest(), labels=LABELS)
    pixels = np.zeros((3, 32, 32), dtype=np.float32)
    task.check_item(pixels, "pixel_values[0]")
    pixels[1, 2, 3] = bad
    with pytest.raises(InvalidInput, match="NaN or infinite"):
        task.check_item(pixels, "pixel_values[0]")


def test_a_request_has_a_decoded_pixel_budget(make_task, make_image):
    task = make_task(_manifest(max_image_pixels=10_000, max_request_pixels=25_000), labels=LABELS)
    image = make_image("PNG", (100, 100))  # 10,000 pixels: each alone is fine
    budget = task.new_budget()
    out = task.preprocess([image] * 3, [budget] * 3)
    assert not isinstance(out[0], Exception) and not isinstance(out[1], Exception)
    assert isinstance(out[2], PayloadTooLarge) and "max_request_pixels" in out[2].message
    assert all(not isinstance(p, Exception) for p in task.preprocess([image] * 3))  # separate requests
