"""What machine a benchmark ran on: its CPU model, cores and the vector extensions that decide int8 speed.

The same VM can land on different hosts: on 2026-12-04 it was an AMD EPYC with AVX2 and no AVX-512/VNNI, and one
sentence took 6.9 ms in-process where earlier tables (machine not recorded) had 3.0 ms. Figures are comparable
only between runs on the same machine line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: the extensions ONNX Runtime's int8 and fp32 kernels choose between
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def describe(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model, cores and which of FLAGS the CPU has (empty on a system without /proc/cpuinfo)."""
    model, flags = "unknown", set[str]()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "extensions": [f for f in FLAGS if f in flags]}


def line(info: dict[str, Any] | None = None) -> str:
    """One line for a benchmark's header."""
    info = info or describe()
    return f"machine: {info['cpu']}, {info['cores']} cores, {' '.join(info['extensions']) or 'no AVX2'}"
