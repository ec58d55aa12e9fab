"""Request bodies: each codec's msgspec Structs parse them, and an invalid one is named by its path, what is wrong
and the field's own description."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ml_service import tensors
from ml_service.codecs import native, v2
from ml_service.dataplane import InputInfo, OutputInfo, Signature
from ml_service.errors import BadRequest, InvalidInput

TEXT = Signature((InputInfo("text", "BYTES", (-1,), "text", 256),), (OutputInfo("embedding", "FP32", (-1, 4)),),
                 "embedding")


def parse(doc: dict[str, Any]) -> v2.InferRequest:
    return v2.parse_infer_request(orjson.dumps(doc), None, TEXT)



def test_v2_datatypes_are_declared_once_for_parsing_and_for_arrays() -> None:
    from typing import get_args

    assert set(get_args(v2.Datatype)) == set(tensors.V2_DTYPES)


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"model_type": "m", "data": {"texts": ["a", 2]}}', "data.texts[1]: expected `str`, got `int` (texts, one "
                                                          "output each)"),
    (b'{"model_type": "m", "data": {"inputs": {"x": 1}, "top_k": 0}}', "data.top_k: expected `int` >= 1 (labels to "
                                                                      "return: an integer from 1 to the number of "
                                                                      "labels (classifiers; default 5))"),
    (b'{"data": {}}', "model_type is required (a model name or alias (GET /models))"),
    (b'{"model_type": "m", "data": {}, "version": 1.5}', "version: expected `int | str | null`, got `float` (pin a "
                                                         "served version; default the live one)"),
    (b'"m"', "request body: expected `object`, got `str` (`POST /inference`: a model, its `data`, and optionally a "
             "version)"),
])
def test_a_bad_body_is_named_by_its_path_with_the_field_s_description(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        native.parse_request(raw)
    assert info.value.message == message


@pytest.mark.parametrize("raw", [b"", b"   ", b"{", b"\xff", b'{"model_type": "m",}'])
def test_a_body_that_is_not_json_is_400(raw: bytes) -> None:
    with pytest.raises(BadRequest, match=r"request body is (empty|not valid JSON)"):
        native.parse_request(raw)


def test_v2_envelope_errors_name_the_tensor_field() -> None:
    with pytest.raises(InvalidInput, match=r"inputs\[0\]\.shape\[1\]: expected `int` >= 0 \(non-negative"):
        parse({"inputs": [{"name": "text", "shape": [1, -2], "datatype": "BYTES", "data": ["a"]}]})
    size = r"inputs\[0\]\.parameters\.binary_data_size: expected `int \| null`, got `bool`"
    with pytest.raises(InvalidInput, match=size):
        parse({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                           "parameters": {"binary_data_size": True}}]})
    with pytest.raises(InvalidInput, match=r"^id: expected `str \| null`, got `int`"):
        parse({"id": 5, "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]})
