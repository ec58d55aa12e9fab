"""The model folder Infinity serves in `make bench-peers`: the packaged all-MiniLM-L6-v2 files plus an
int8 ONNX made by our build's own steps (export, transformer fusions, per-channel dynamic int8), but
ending at the token embeddings, since Infinity's optimum engine pools itself."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(dst: Path = HERE / ".venvs" / "infinity-model") -> None:
    from ml_service.modelbuild.common import offline_env
    from ml_service.modelbuild.sources import minilm_dir
    from ml_service.modelbuild.text import export_encoder, optimize, quantize

    offline_env()
    if (dst / "model_quantized.onnx").exists():
        print(f"{dst} is ready")
        return
    dst.mkdir(parents=True, exist_ok=True)
    src = minilm_dir()
    for f in src.iterdir():
        target = dst / f.name
        if f.suffix != ".safetensors" and not target.exists():
            (shutil.copytree if f.is_dir() else shutil.copyfile)(f, target)
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_encoder(Path(tmp), pooled=False)
        fused = Path(tmp) / "fused.onnx"
        optimize(raw, fused)
        quantize(fused, dst / "model_quantized.onnx")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / ".venvs" / "infinity-model")
