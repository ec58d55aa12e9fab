"""`make bench-parse`: decoding request bodies on the hot path, old (orjson, then checks by hand) against new
(one msgspec pass into the codec's typed Structs), and pydantic's `model_validate_json` of the same envelope (the
other way one description could parse). Interleaved: every round times each variant once per case, in turn, so
the VM's drift hits all of them alike; the report is the median over rounds of each variant's time per body and
its ratio to old within the same round. Cases: one text and 32 texts on `/inference`, V2 (BYTES) and OpenAI, and
an image as JSON numbers on V2 (FP32 [1, 3, 224, 224]: tensor data that was and is converted by `tensors.py`).

The old code is read from git at `--old` (default: the commit before the change) into throwaway modules, so this
keeps measuring against the same baseline however the codecs change.

    .venv/bin/python bench/parse.py [--rounds 8] [--seconds 0.4] [--old 866e65a]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus import corpus

REPO = HERE.parent
OLD = "866e65a"


def _old_module(ref: str, name: str, path: str, replace: tuple[str, str] | None = None) -> types.ModuleType:
    """A module of the package as it was at `ref`, loaded under `name`."""
    source = subprocess.run(["git", "show", f"{ref}:ml-service/src/ml_service/{path}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    if replace:
        source = source.replace(*replace)
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(source, f"{ref}:{path}", "exec"), module.__dict__)  # noqa: S102 (our own code at a commit)
    return module


def _variants(ref: str) -> dict[str, dict[str, Callable[[bytes], Any]]]:
    """Per protocol: old, new (and pydantic for the native envelope) parsers of one body."""
    from ml_service.codecs import embeddings, native, v2
    from ml_service.dataplane import InputInfo, OutputInfo, Signature
    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

    common = _old_module(ref, "_old_common", "codecs/common.py")
    imports = ("from ml_service.codecs.common import", "from _old_common import")
    old_native = _old_module(ref, "_old_native", "codecs/native.py", imports)
    old_v2 = _old_module(ref, "_old_v2", "codecs/v2.py", imports)
    old_openai = _old_module(ref, "_old_embeddings", "codecs/embeddings.py", imports)

    class Data(BaseModel):
        model_config = ConfigDict(extra="allow", strict=True)
        text: str | None = None
        texts: list[str] | None = None
        image: str | None = None
        images: list[str] | None = None
        inputs: dict[str, Any] | None = None
        top_k: int | None = Field(default=None, ge=1)

    class Body(BaseModel):
        model_config = ConfigDict(strict=True)
        model_type: str = Field(min_length=1)
        data: Data
        version: StrictStr | StrictInt | None = None

    sig = Signature((InputInfo("text", "BYTES", (-1,), "text", 256),), (OutputInfo("embedding", "FP32", (-1, 384)),),
                    "embedding")
    pixels = Signature((InputInfo("pixel_values", "FP32", (-1, 3, 224, 224), "pixels", 4 * 3 * 224 * 224),),
                       (OutputInfo("logits", "FP32", (-1, 1000)),), "classification")
    return {
        "native": {"old": lambda b: old_native.parse_request(common.parse_json(b)),
                   "new": native.parse_request,
                   "pydantic": Body.model_validate_json},
        "v2": {"old": lambda b: old_v2.parse_infer_request(b, None, sig),
               "new": lambda b: v2.parse_infer_request(b, None, sig)},
        "v2-fp32": {"old": lambda b: old_v2.parse_infer_request(b, None, pixels),  # an image as JSON numbers
                    "new": lambda b: v2.parse_infer_request(b, None, pixels)},
        "openai": {"old": lambda b: old_openai.parse_request(common.parse_json(b), 2048),
                   "new": lambda b: embeddings.parse_request(b, 2048)},
    }


def _bodies(n: int) -> dict[str, bytes]:
    texts = corpus()[:n]
    rng = random.Random(n)
    pixels = [round(rng.uniform(-2, 2), 4) for _ in range(n * 3 * 224 * 224)] if n == 1 else []
    return {
        "v2-fp32": orjson.dumps({"inputs": [{"name": "pixel_values", "shape": [n, 3, 224, 224], "datatype": "FP32",
                                             "data": pixels}]}),
        "native": orjson.dumps({"model_type": "text-embedding", "data": {"texts": texts} if n > 1 else
                                {"text": texts[0]}}),
        "v2": orjson.dumps({"inputs": [{"name": "text", "shape": [n], "datatype": "BYTES", "data": texts}]}),
        "openai": orjson.dumps({"model": "text-embedding", "input": texts if n > 1 else texts[0]}),
    }


def _time(fn: Callable[[bytes], Any], body: bytes, seconds: float) -> float:
    """Microseconds per call, over about `seconds` (the clock read every 200 calls, or every call when slow)."""
    t0 = time.perf_counter()
    fn(body)
    step = 200 if time.perf_counter() - t0 < 1e-4 else 1
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(step):
            fn(body)
        n += step
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=0.4, help="per variant, case and round")
    parser.add_argument("--old", default=OLD, help="git ref of the old codecs")
    args = parser.parse_args()
    variants = _variants(args.old)
    cases = [(protocol, n) for n in (1, 32) for protocol in variants if n == 1 or protocol != "v2-fp32"]
    bodies = {n: _bodies(n) for n in (1, 32)}
    for protocol, n in cases:  # the same answer from old and new before anything is timed
        for fn in variants[protocol].values():
            fn(bodies[n][protocol])
    times: dict[tuple[str, int, str], list[float]] = {}
    for _ in range(args.rounds):
        for protocol, n in cases:
            for label, fn in variants[protocol].items():
                times.setdefault((protocol, n, label), []).append(_time(fn, bodies[n][protocol], args.seconds))
    print(f"median of {args.rounds} interleaved rounds; ratio = variant / old in the same round (< 1: faster)")
    print(f"{'protocol':8} {'items':>5} {'variant':9} {'µs/body':>8} {'ratio':>6} {'ratio range':>13}")
    for protocol, n in cases:
        old = times[(protocol, n, "old")]
        for label in variants[protocol]:
            mine = times[(protocol, n, label)]
            ratios = [m / o for m, o in zip(mine, old, strict=True)]
            print(f"{protocol:8} {n:>5} {label:9} {statistics.median(mine):>8.2f} {statistics.median(ratios):>6.2f} "
                  f"{min(ratios):>6.2f}-{max(ratios):<6.2f}")


if __name__ == "__main__":
    main()
