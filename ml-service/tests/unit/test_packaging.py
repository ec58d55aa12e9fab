"""What the service's wheel (and so its image) carries: the service, its dashboard, and no test support."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_service_and_no_test_support(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(SERVICE)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("ml_service-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(p.relative_to(SERVICE / "src")) for p in (SERVICE / "src").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert "ml_service/dashboard/index.html" in names
    assert not [n for n in names if "testing" in n.split("/")[0] or "/testing/" in n], sorted(names)
    assert not [n for n in names if n.startswith(("tests/", "ml_service_testing"))]
