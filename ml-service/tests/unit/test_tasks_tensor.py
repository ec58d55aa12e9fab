"""The tensor task: named inputs checked against declared shapes and dtypes, split into rows."""

from __future__ import annotations

import numpy as np
import pytest

from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.tasks import ItemResult, Prepared

from .conftest import native_items, native_output


def _rows(task, a, ids):
    """Batched arrays as rows, as the codecs split them."""
    from ml_service.codecs.common import split_rows
    from ml_service.tasks import model_spec

    return list(split_rows({"a": a, "ids": ids}, model_spec(task.entry, task.version).signature))


def _manifest(**limits):
    return {
        "task": "tensor", "runtime": "fake", "file": "model.fake",
        "inputs": [{"name": "a", "dtype": "float32", "shape": [-1, 2, -1]},
                   {"name": "ids", "dtype": "int64", "shape": [-1, 3]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 1]}],
        "limits": {"max_items": 3, "max_tensor_elements": 24, **limits},
    }


def test_parse_seed_splits_rows_with_declared_dtypes(make_task):
    task = make_task(_manifest())
    rows, options = native_items(task, {"inputs": {
        "a": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]],
        "ids": [[1, 2, 3], [4, 5, 6]],
    }})
    assert options == 0
    assert len(rows) == 2
    assert rows[1]["a"].tolist() == [[5.0, 6.0], [7.0, 8.0]]
    assert rows[1]["a"].dtype == np.float32
    assert rows[0]["ids"].tolist() == [1, 2, 3]
    assert rows[0]["ids"].dtype == np.int64


def test_variable_dimensions_accept_any_size(make_task):
    task = make_task(_manifest())
    rows, _ = native_items(task, {"inputs": {"a": [[[1, 2, 3], [4, 5, 6]]], "ids": [[1, 2, 3]]}})
    assert rows[0]["a"].shape == (2, 3)


@pytest.mark.parametrize(("inputs", "message"), [
    ({"a": [[[1, 2], [3, 4]]], "ids": [[1, 2]]}, "input 'ids' has rows of shape [2]; expected [-1, 3]"),
    ({"a": [[1, 2]], "ids": [[1, 2, 3]]}, "input 'a' has rows of shape [2]"),
    ({"a": [[[1, 2], [3, 4], [5, 6]]], "ids": [[1, 2, 3]]}, "input 'a' has rows of shape [3, 2]"),
    ({"a": 5, "ids": [[1, 2, 3]]}, "input 'a' needs a batch dimension"),
    ({"a": [[[1, 2], [3]]], "ids": [[1, 2, 3]]}, "not a rectangular array of numbers"),
    ({"a": [[[1, 2], [3, 4]]], "ids": [[1, 2, 3]], "b": [1]}, "unknown input(s) ['b']"),
    ({"a": [[[1, 2], [3, 4]]]}, "missing input(s) ['ids']"),
    ({"a": [[[1, 2], [3, 4]]], "ids": [[1, 2, 3], [4, 5, 6]]}, "same batch size"),
])
def test_bad_shapes_and_names(make_task, inputs, message):
    task = make_task(_manifest())
    with pytest.raises(InvalidInput) as info:
        native_items(task, {"inputs": inputs})
    assert message in info.value.message


@pytest.mark.parametrize(("a", "ids"), [
    ([[["x", "y"], ["z", "w"]]], [[1, 2, 3]]),  # strings for floats
    ([[["1.5", "2"], ["3", "4"]]], [[1, 2, 3]]),  # numbers in strings are still strings
    ([[[1, None], [3, 4]]], [[1, 2, 3]]),  # null is not a number (and must not become NaN)
    ([[[1, 2], [3, 4]]], [[1.5, 2, 3]]),  # a float for an int64 input
    ([[[True, False], [True, True]]], [[1, 2, 3]]),  # booleans for floats
    ([[[1, 2], [3, 4]]], [[1, 2, 2**70]]),  # out of int64 range
    ([[[1, 2], [3, {"v": 4}]]], [[1, 2, 3]]),  # objects
])
def test_wrong_dtypes(make_task, a, ids):
    task = make_task(_manifest())
    with pytest.raises(InvalidInput):
        native_items(task, {"inputs": {"a": a, "ids": ids}})


def test_ints_are_fine_for_float_inputs(make_task):
    task = make_task(_manifest())
    rows, _ = native_items(task, {"inputs": {"a": [[[1, 2], [3, 4]]], "ids": [[1, 2, 3]]}})
    assert rows[0]["a"].dtype == np.float32


def test_inputs_must_be_an_object(make_task):
    task = make_task(_manifest())
    for bad in ({}, {"inputs": [1, 2]}, {"inputs": "a"}, {"a": [[1]]}):
        with pytest.raises(InvalidInput, match=r"data\.inputs.*object"):
            native_items(task, bad)


def test_limits(make_task):
    task = make_task(_manifest())
    ids = [[1, 2, 3]] * 3
    native_items(task, {"inputs": {"a": [[[1, 2], [3, 4]]] * 3, "ids": ids}})  # exactly max_items
    with pytest.raises(PayloadTooLarge, match="4 items"):
        native_items(task, {"inputs": {"a": [[[1, 2], [3, 4]]] * 4, "ids": [*ids, [1, 2, 3]]}})
    with pytest.raises(PayloadTooLarge, match="50 elements; the limit is 24"):
        native_items(task, {"inputs": {"a": [[[1] * 25, [2] * 25]], "ids": [[1, 2, 3]]}})
    with pytest.raises(InvalidInput):
        native_items(task, {"inputs": {"a": [], "ids": []}})
    with pytest.raises(InvalidInput, match="must not be empty"):
        task.check_count(len(_rows(task, np.zeros((0, 2, 2), np.float32), np.zeros((0, 3), np.int64))), "x")


def test_rows_are_grouped_by_shape_and_collated(make_task):
    task = make_task(_manifest())
    rows = _rows(task, np.zeros((2, 2, 4), dtype=np.float32), np.zeros((2, 3), np.int64))
    rows += _rows(task, np.ones((1, 2, 5), dtype=np.float32), np.zeros((1, 3), np.int64))
    prepared = task.preprocess(rows)
    assert prepared[0].key == prepared[1].key != prepared[2].key
    feeds = task.collate(prepared[:2])
    assert feeds["a"].shape == (2, 2, 4)
    assert feeds["ids"].shape == (2, 3)
    outs = task.postprocess({"y": np.array([[1.0], [2.0]]), "z": np.array([3, 4])}, feeds, prepared[:2])
    assert [o["y"].tolist() for o in outs] == [[1.0], [2.0]]
    assert [int(o["z"]) for o in outs] == [3, 4]
    assert native_output(task, ItemResult(outs[1], {})) == outs[1]


def test_check_item(make_task):
    task = make_task(_manifest())
    task.check_item({"a": np.zeros((2, 2), np.float32), "ids": np.zeros(3, np.int64)}, "x")
    with pytest.raises(InvalidInput):
        task.check_item([1, 2], "x")
    with pytest.raises(InvalidInput, match="missing input 'ids'"):
        task.check_item({"a": np.zeros((2, 2), np.float32)}, "x")
    with pytest.raises(InvalidInput, match="must be int64"):
        task.check_item({"a": np.zeros((2, 2), np.float32), "ids": np.zeros(3, np.float32)}, "x")
    assert isinstance(task.preprocess([{"a": np.zeros(2)}])[0], Prepared)
