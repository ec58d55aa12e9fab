"""Completes a wheelhouse for the image's Python when it is older than the host's: requirements whose markers hold
there and not here (`redis` wants `async-timeout` below 3.11.3; Debian bookworm's Python is 3.11.2) are downloaded
with their own dependencies until nothing is missing.

    python deploy/docker/wheelhouse_markers.py DIR [PYTHON_FULL_VERSION]      (default 3.11.2)
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename


def missing(wheelhouse: Path, python: str) -> set[str]:
    """Requirements of the wheels in `wheelhouse` that hold on `python` and that no wheel there provides."""
    have = {parse_wheel_filename(w.name)[0] for w in wheelhouse.glob("*.whl")}
    env = {"python_full_version": python, "python_version": ".".join(python.split(".")[:2]), "extra": ""}
    wanted: set[str] = set()
    for wheel in wheelhouse.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            headers = HeaderParser().parsestr(z.read(meta).decode())
        for line in headers.get_all("Requires-Dist") or []:
            req = Requirement(line)
            if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(req.name) not in have:
                wanted.add(str(Requirement(f"{req.name}{req.specifier}")))
    return wanted


def main() -> None:
    wheelhouse, python = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "3.11.2")
    while wanted := missing(wheelhouse, python):
        print(f"{wheelhouse}: adding for Python {python}: {', '.join(sorted(wanted))}")
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "-w",
                        str(wheelhouse), *sorted(wanted)], check=True)


if __name__ == "__main__":
    main()
