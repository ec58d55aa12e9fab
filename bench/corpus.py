"""The benchmark corpus: ~2000 English sentences of 8-25 words, deterministic.

Built from the prose of the Python language reference that ships with CPython
(`pydoc_data.topics`), so every machine with the same Python makes the same file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.txt"
_WORD = re.compile(r"^\(?[A-Za-z0-9][A-Za-z0-9'\-,;:()]*$")


def _sentences(text: str) -> list[str]:
    kept = []
    for line in text.splitlines():
        s = line.strip()
        if not s or line.startswith("    ") or s.startswith((">>>", "...", "+", "=", "-", "|")):
            kept.append("\n")
            continue
        kept.append(s.removeprefix("* "))
    out = []
    for para in " ".join(kept).split("\n"):
        for sent in re.split(r"(?<=[.!?])\s+", para.strip()):
            sent = re.sub(r"\s+", " ", sent).strip().translate(str.maketrans("", "", '"\u201c\u201d*'))
            words = sent.split()
            if sent.endswith(".") and 8 <= len(words) <= 25 and all(_WORD.match(w.rstrip(".")) for w in words):
                out.append(sent)
    return out


def _docstrings() -> list[str]:
    """Docstrings of pure-Python stdlib modules and their public functions and classes, in a fixed order."""
    import importlib
    import inspect
    import warnings

    skip = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "__main__", "pydoc_data"}
    docs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(sys.stdlib_module_names):
            if name.startswith("_") or name in skip:
                continue
            try:
                mod = importlib.import_module(name)
            except Exception:  # noqa: S112 - modules that do not import here are skipped
                continue
            docs.append(mod.__doc__ or "")
            for attr in sorted(dir(mod)):
                obj = getattr(mod, attr, None)
                if not attr.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) \
                        and getattr(obj, "__module__", None) == name:
                    docs.append(inspect.getdoc(obj) or "")
    return docs


def make_corpus(n: int = 2000) -> list[str]:
    from pydoc_data.topics import topics

    seen: set[str] = set()
    out: list[str] = []
    for text in [topics[k] for k in sorted(topics)] + _docstrings():
        for s in _sentences(text):
            if s not in seen:
                seen.add(s)
                out.append(s)
    if len(out) < 200:
        raise RuntimeError("too few sentences in pydoc_data")
    while len(out) < n:  # cycle if this Python's docs are short
        out += out[: n - len(out)]
    return out[:n]


def corpus() -> list[str]:
    """The corpus, written to bench/corpus.txt on first use."""
    if not CORPUS.exists():
        CORPUS.write_text("\n".join(make_corpus()) + "\n", encoding="utf-8")
    return [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]


if __name__ == "__main__":
    lines = corpus()
    print(f"{len(lines)} sentences in {CORPUS}, mean {sum(len(s.split()) for s in lines) / len(lines):.1f} words")
