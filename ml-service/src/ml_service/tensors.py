"""Tensor datatypes and conversions shared by the tasks and the codecs: one dtype table, one JSON -> array
conversion with its checks, and the binary tensor encodings of the Open Inference Protocol.

Nothing here knows a protocol's request shape, a task or the service: only names, dtypes and arrays.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from ml_service.errors import InvalidInput, PayloadTooLarge

#: Open Inference Protocol datatypes and their little-endian numpy dtypes (BYTES: Python objects).
V2_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
#: model.toml dtypes -> Open Inference Protocol datatypes.
MANIFEST_TO_V2: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "string": "BYTES",
}
_NUMPY_TO_V2: dict[str, str] = {dt.name: name for name, dt in V2_DTYPES.items() if name != "BYTES"}
#: numpy kinds of the values sent that convert without loss to a target kind
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
MAX_DIMS = 32  # numpy allows 64; no model of ours has more than 4
_LEN = struct.Struct("<I")


def _kind_name(kind: str) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "floats", "U": "strings"}.get(kind, "mixed values")


def check_shape(shape: Sequence[int], cap: int, name: str) -> int:
    """The element count of a declared shape, refusing it before any allocation when any dimension, or the
    product, is over `cap` (a zero elsewhere must not let a 2**62 dimension through)."""
    count = math.prod(shape)
    if count > cap or any(d > cap for d in shape):
        raise PayloadTooLarge(f"input '{name}' declares shape {list(shape)} ({count} elements); "
                              f"this model accepts at most {cap}")
    return count


def to_array(data: Any, datatype: str, shape: tuple[int, ...] | None, name: str) -> np.ndarray:
    """JSON numbers (nested or flat, row-major) as an array of `datatype`; lossy conversions are refused.

    With a `shape`, the data must hold exactly that many values and is reshaped to it."""
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"input '{name}': data is not a rectangular array of numbers") from None
    if arr.dtype == object:
        raise InvalidInput(f"input '{name}': data is not a rectangular array of numbers (mixed values)")
    target = V2_DTYPES[datatype]
    if shape is not None and arr.size != math.prod(shape):
        raise InvalidInput(f"input '{name}' has {arr.size} values but shape {list(shape)} needs {math.prod(shape)}")
    if arr.size:
        if arr.dtype.kind not in _ACCEPTED_KINDS[target.kind]:
            raise InvalidInput(f"input '{name}' is {datatype} but its data holds {_kind_name(arr.dtype.kind)}")
        if target.kind in "iu" and arr.dtype.kind in "iu":
            info = np.iinfo(target)
            if int(arr.min()) < info.min or int(arr.max()) > info.max:
                raise InvalidInput(f"input '{name}' has values outside the range of {datatype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(target)
    if target.kind == "f" and arr.size and not np.isfinite(out).all() and np.isfinite(arr.astype(np.float64)).all():
        raise InvalidInput(f"input '{name}' has values outside the range of {datatype}")
    return out.reshape(shape) if shape is not None else out


def object_array(items: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    """An object array of `items` in `shape` (no element is ever interpreted as a sequence)."""
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def flatten_strings(data: Any, count: int, name: str) -> list[str]:
    """Nested or flat JSON lists of strings, row-major, stopping as soon as there are too many."""
    if not isinstance(data, list):
        raise InvalidInput(f"input '{name}': data must be a list of strings")
    out: list[str] = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                if len(stack) > MAX_DIMS:
                    raise InvalidInput(f"input '{name}': data is nested too deeply")
                stack.append(iter(x))
                break
            if not isinstance(x, str):
                raise InvalidInput(f"input '{name}' is BYTES: its data must be strings, got {type(x).__name__}")
            out.append(x)
            if len(out) > count:
                raise InvalidInput(f"input '{name}' has more values than its shape allows ({count})")
        else:
            stack.pop()
    if len(out) != count:
        raise InvalidInput(f"input '{name}' has {len(out)} values but its shape needs {count}")
    return out


def decode_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """One input's JSON data as an array of its declared shape."""
    if datatype == "BYTES":
        return object_array(flatten_strings(data, math.prod(shape), name), shape)
    if not isinstance(data, list):
        raise InvalidInput(f"input '{name}': data must be a list of numbers")
    return to_array(data, datatype, shape, name)


def split_bytes_elements(buf: memoryview, count: int, name: str) -> list[bytes]:
    """BYTES binary data: `count` elements, each a 4-byte little-endian length and then the bytes."""
    out: list[bytes] = []
    pos, end = 0, len(buf)
    for i in range(count):
        if pos + 4 > end:
            raise InvalidInput(f"binary data of input '{name}' ends before element {i} of {count}")
        (length,) = _LEN.unpack_from(buf, pos)
        pos += 4
        if length > end - pos:
            raise InvalidInput(f"binary data of input '{name}': element {i} declares {length} bytes "
                               f"but only {end - pos} remain")
        out.append(bytes(buf[pos:pos + length]))
        pos += length
    if pos != end:
        raise InvalidInput(f"binary data of input '{name}' has {end - pos} bytes after its {count} elements")
    return out


def decode_binary(buf: memoryview, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """One input's binary data as an array of its declared shape (no copy for numeric data)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return object_array(split_bytes_elements(buf, count, name), shape)
    dt = V2_DTYPES[datatype]
    need = count * dt.itemsize
    if len(buf) != need:
        raise InvalidInput(f"input '{name}': binary_data_size is {len(buf)} bytes but shape {list(shape)} "
                           f"of {datatype} needs {need}")
    if datatype == "BOOL":
        return np.frombuffer(buf, dtype=np.uint8).astype(np.bool_).reshape(shape)
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def datatype_of(arr: np.ndarray) -> str:
    """The Open Inference Protocol datatype of an array."""
    if arr.dtype.kind in "OUS":
        return "BYTES"
    try:
        return _NUMPY_TO_V2[arr.dtype.name]
    except KeyError:
        raise TypeError(f"output dtype {arr.dtype} has no V2 datatype") from None


def _as_bytes(x: Any) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode("utf-8")


def encode_binary(arr: np.ndarray) -> bytes:
    """A tensor's binary data: little-endian row-major values; BYTES as length-prefixed elements."""
    if datatype_of(arr) == "BYTES":
        parts = []
        for x in arr.reshape(-1):
            b = _as_bytes(x)
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def json_data(arr: np.ndarray) -> Any:
    """A tensor's values for a JSON body, flat and row-major (numbers stay a numpy array for orjson)."""
    if datatype_of(arr) == "BYTES":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
    return np.ascontiguousarray(arr).reshape(-1)
