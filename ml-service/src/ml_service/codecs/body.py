"""Request bodies as typed envelopes: each protocol declares its body once, as msgspec Structs, which both parse
the request (one pass from bytes to typed objects, faster than orjson plus checks by hand: docs/benchmarks.md)
and describe it in /openapi.json. An invalid body is an error that names the field, says what is wrong, and adds
the field's own description as the hint."""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar

import msgspec

from ml_service.errors import BadRequest, MLServiceError

T = TypeVar("T")
_AT = re.compile(r"(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]+)`")
_SEGMENT = re.compile(r"\[[^\]]*\]|[^.\[]+")


def decode(body: bytes | memoryview, decoder: msgspec.json.Decoder[T], invalid: type[MLServiceError]) -> T:
    """`body` as the decoder's type: 400 when it is not JSON, `invalid` (the protocol's status for bad content)
    when it does not fit the type."""
    if not len(body):
        raise BadRequest("request body is empty; send a JSON object")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise invalid(describe(exc, decoder.type)) from None
    except msgspec.DecodeError as exc:
        why = str(exc).removeprefix("JSON is malformed: ")
        raise BadRequest(f"request body is not valid JSON: {why[:1].lower()}{why[1:]}") from None


def convert(value: Any, kind: type[T], invalid: type[MLServiceError]) -> T:
    """Python values (the CLI, tests) as `kind`, checked exactly as a body is."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise invalid(describe(exc, kind)) from None


def describe(exc: msgspec.ValidationError, kind: Any) -> str:
    """`data.texts[1]: expected `str`, got `int` (hint)` from msgspec's "Expected `str`, got `int` - at
    `$.data.texts[1]`"; the hint is the field's description in the schema."""
    found = _AT.fullmatch(str(exc))
    what, path = (found["what"], (found["path"] or "").lstrip(".")) if found else (str(exc), "")
    missing = _MISSING.fullmatch(what)
    if missing:
        path = f"{path}.{missing['field']}" if path else missing["field"]
        message = f"{path} is required"
    else:
        message = f"{path or 'request body'}: {what[:1].lower()}{what[1:]}"
    hint = _hint(kind, path)
    return f"{message} ({hint})" if hint else message


@functools.cache
def _schema(kind: Any) -> dict[str, Any]:
    return msgspec.json.schema(kind)


def _hint(kind: Any, path: str) -> str | None:
    """The description of the field at `path` (`data.texts[3]` -> that of `data.texts`), else None."""
    schema = _schema(kind)
    defs: dict[str, Any] = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        for option in node.get("anyOf", [node]):
            if "$ref" in option:
                return dict(defs.get(option["$ref"].rsplit("/", 1)[-1], {}))
            if "properties" in option or "items" in option:
                return dict(option)
        return node

    node = resolve(schema)
    hint = node.get("description")
    for segment in _SEGMENT.findall(path):
        if segment.startswith("["):
            node = resolve(node.get("items") or node.get("additionalProperties") or {})
            continue
        prop = node.get("properties", {}).get(segment)
        if prop is None:
            return hint
        node = resolve(prop)
        inner = [o.get("description") for o in prop.get("anyOf", []) if o.get("description")]
        hint = prop.get("description") or (inner[0] if inner else None) or node.get("description")
    return " ".join(str(hint).split()).rstrip(".") if hint else None


def schemas(kinds: list[Any], ref_template: str) -> dict[str, Any]:
    """The JSON Schemas of these body types and of everything they refer to, for /openapi.json."""
    _, components = msgspec.json.schema_components(kinds, ref_template=ref_template)
    for component in components.values():
        if component.get("required") == []:
            del component["required"]
    return components
