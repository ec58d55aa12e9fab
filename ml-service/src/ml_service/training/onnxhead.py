"""The head graph `embedding [N, D] -> logits [N, K]` (`x·Wᵀ + b`) written as ONNX protobuf bytes by hand: the
service does not carry the `onnx` package (a build-only extra), and this graph is two nodes. The same graph as
`modelbuild.common.linear_head_model` (checked in tests/unit/test_training.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: what modelbuild writes (modelbuild/common.py IR_VERSION, opset 17)
IR_VERSION = 8
OPSET = 17
_FLOAT = 1  # TensorProto.FLOAT


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, s: str) -> bytes:
    return _bytes(field, s.encode())


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian float32)."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return b"".join(_int(1, d) for d in data.shape) + _int(2, _FLOAT) + _str(8, name) + _bytes(9, data.tobytes())


def _value_info(name: str, dims: list[int | str]) -> bytes:
    """ValueInfoProto: name (1), type (2) = TypeProto.tensor_type (1): elem_type (1), shape (2) of dims (1)."""
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _str(2, d)) for d in dims)
    return _str(1, name) + _bytes(2, _bytes(1, _int(1, _FLOAT) + _bytes(2, shape)))


def _node(op: str, inputs: list[str], outputs: list[str], name: str) -> bytes:
    """NodeProto: input (1), output (2), name (3), op_type (4)."""
    return b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(3, name) + _str(4, op)


def head_bytes(weight: np.ndarray, bias: np.ndarray) -> bytes:
    """ModelProto of the linear head: MatMul(embedding, Wᵀ) + b."""
    k, dim = weight.shape
    graph = (_bytes(1, _node("MatMul", ["embedding", "head_weight_t"], ["mm"], "head_MatMul"))
             + _bytes(1, _node("Add", ["mm", "head_bias"], ["logits"], "head_Add"))
             + _str(2, "linear_head")
             + _bytes(5, _tensor("head_weight_t", weight.T))
             + _bytes(5, _tensor("head_bias", bias))
             + _bytes(11, _value_info("embedding", ["batch", dim]))
             + _bytes(12, _value_info("logits", ["batch", k])))
    opset = _str(1, "") + _int(2, OPSET)
    return _int(1, IR_VERSION) + _str(2, "ml-service models train") + _bytes(7, graph) + _bytes(8, opset)


def write_head(path: Path, weight: np.ndarray, bias: np.ndarray) -> None:
    """Write the head graph to `path`."""
    path.write_bytes(head_bytes(weight, bias))


__all__ = ["head_bytes", "write_head"]
