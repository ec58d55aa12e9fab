"""Labelled examples for `models train`: reading them (CSV or JSONL), checking them, the base set a version was
trained from (`examples.csv` beside it), and merging the two (a given text re-labels the base's same text)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ml_service.errors import InvalidInput, PayloadTooLarge

#: the longest label (labels.txt holds one a line; the backend stores them as category names)
MAX_LABEL_CHARS = 64
#: the file a version keeps its examples in: text, label and the split each had when it was trained
EXAMPLES_FILE = "examples.csv"
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Example:
    """One labelled text; `split` is the role it had in the training that stored it (kept by the next one)."""

    text: str
    label: str
    split: str | None = None


def key(text: str) -> str:
    """How texts are matched: case and whitespace do not count."""
    return " ".join(text.split()).casefold()


def check(examples: Sequence[Example], most: int, max_chars: int, where: str = "examples") -> list[Example]:
    """The examples stripped, or a 4xx that names the first bad one: none, over `most`, a blank text or label, a
    label over 64 characters or on several lines, a text over the model's `max_chars`."""
    if not examples:
        raise InvalidInput(f"{where} is empty; send at least one {{text, label}}")
    if len(examples) > most:
        raise PayloadTooLarge(f"{where} has {len(examples)} examples; the limit is {most} "
                              "(ML_SERVICE_TRAIN_MAX_EXAMPLES)")
    out = []
    for i, e in enumerate(examples):
        text, label = e.text.strip(), e.label.strip()
        if not text:
            raise InvalidInput(f"{where}[{i}].text is blank")
        if not label:
            raise InvalidInput(f"{where}[{i}].label is blank")
        if len(label) > MAX_LABEL_CHARS:
            raise InvalidInput(f"{where}[{i}].label has {len(label)} characters; the limit is {MAX_LABEL_CHARS}")
        if any(c in label for c in "\r\n\t\x00"):
            raise InvalidInput(f"{where}[{i}].label must be one line of text")
        if len(text) > max_chars:
            raise PayloadTooLarge(f"{where}[{i}].text has {len(text)} characters; the model's limit is {max_chars}")
        out.append(Example(text, label, e.split if e.split in SPLITS else None))
    return out


def merge(base: Iterable[Example], given: Iterable[Example]) -> tuple[list[Example], int]:
    """The base set with the given examples over it (the same text, matched by `key`, takes the given label and
    is split anew), and how many base texts were re-labelled."""
    rows: dict[str, Example] = {}
    for e in base:
        rows[key(e.text)] = e
    relabelled = 0
    for e in given:
        k = key(e.text)
        old = rows.pop(k, None)  # popped: a given example comes after the base, in the order given
        relabelled += old is not None and old.label != e.label
        rows[k] = Example(e.text, e.label)
    return list(rows.values()), relabelled


def parse(data: bytes, name: str) -> list[Example]:
    """Examples from a file's bytes: JSON Lines (`.jsonl`, `.ndjson`: {"text", "label"} a line) or CSV with a
    header naming `text` and `label` (and optionally `split`)."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{name} is not UTF-8 text") from None
    if name.endswith((".jsonl", ".ndjson")):
        out = []
        for n, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise InvalidInput(f"{name} line {n} is not JSON") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or \
                    not isinstance(row.get("label"), str):
                raise InvalidInput(f"{name} line {n}: expected {{\"text\": str, \"label\": str}}")
            out.append(Example(row["text"], row["label"]))
        return out
    reader = csv.DictReader(io.StringIO(content, newline=""))
    if not reader.fieldnames or not {"text", "label"} <= set(reader.fieldnames):
        raise InvalidInput(f"{name}: the CSV header must name the columns text and label")
    return [Example(r["text"] or "", r["label"] or "", r.get("split") or None) for r in reader]


def read(path: Path) -> list[Example]:
    """The examples in a CSV or JSONL file."""
    return parse(path.read_bytes(), path.name)


def write(path: Path, examples: Iterable[Example]) -> None:
    """Write examples as CSV (text, label, split)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "split"])
        for e in examples:
            w.writerow([e.text, e.label, e.split or ""])


def stored(version_dir: Path) -> Path | None:
    """The examples a version was trained from: its own `examples.csv`, else the model directory's (shared by the
    versions the build trained from one dataset, as labels.txt is)."""
    for p in (version_dir / EXAMPLES_FILE, version_dir.parent / EXAMPLES_FILE):
        if p.is_file():
            return p
    return None


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root` when inside it (reports name files without the server's paths)."""
    return os.path.relpath(path, root) if path.is_relative_to(root) else path.name


__all__ = ["EXAMPLES_FILE", "MAX_LABEL_CHARS", "Example", "check", "key", "merge", "parse", "read", "stored",
           "write"]
