"""`make run`: ml-service and the app's backend side by side in the foreground.

Ctrl-C (SIGINT) or SIGTERM stops both the way SIGTERM stops each alone: they answer what they hold, then exit.
Each server runs in its own session, so the terminal's Ctrl-C reaches this launcher only and each server gets
exactly one SIGTERM (a second signal would make uvicorn skip its graceful shutdown). If one server exits on its
own, the other is stopped and its status is this launcher's. After a Ctrl-C it exits 0, printing no error.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", type=Path, default=Path(sys.executable).parent, help="the venv's bin directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="ml-service")
    p.add_argument("--backend-port", type=int, default=8000)
    p.add_argument("--model-dir", type=Path, default=REPO / "models")
    args = p.parse_args()
    bin_dir, model_dir = args.bin.resolve(), args.model_dir.resolve()  # the backend runs in backend/
    ml_url = os.environ.get("ML_SERVICE_URL") or f"http://{args.host}:{args.port}"
    commands = [
        ([str(bin_dir / "ml-service"), "serve", "--host", args.host, "--port", str(args.port), "--model-dir",
          str(model_dir), "--preload", "*"], REPO, dict(os.environ)),
        ([str(bin_dir / "uvicorn"), "app.main:app", "--host", args.host, "--port", str(args.backend_port)],
         REPO / "backend", {**os.environ, "ML_SERVICE_URL": ml_url}),
    ]
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for cmd, cwd, env in commands:
            servers.append(subprocess.Popen(cmd, cwd=cwd, env=env, start_new_session=True))
    except OSError as exc:
        print(f"make run: cannot start {exc.filename}: {exc.strerror} (run `make venv`)", file=sys.stderr)
        for s in servers:
            s.terminate()
            s.wait()
        return 1
    asked: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        if not asked:
            asked.append(signum)
            for s in servers:
                if s.poll() is None:
                    s.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while any(s.poll() is None for s in servers):
        done = [s for s in servers if s.poll() is not None]
        if done and not asked:  # one ended on its own: stop the other, report its status
            code = done[0].returncode or 1
            stop(signal.SIGTERM, None)
        time.sleep(0.1)
    if not asked:
        code = next((s.returncode for s in servers if s.returncode), 0)
    return code


if __name__ == "__main__":
    sys.exit(main())
