"""docs/architecture.md keeps up with the code: every module of the service is named in its module table."""

from __future__ import annotations

from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2]
DOC = SERVICE.parent / "docs" / "architecture.md"


def _module_table() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Modules"):]
    return section[: section.index("\n## ")]


def test_every_module_is_named_in_the_architecture_doc() -> None:
    table = _module_table()
    package = SERVICE / "src" / "ml_service"
    modules = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                     if p.name != "__init__.py" or p.parent.parent != package)
    modules = [m for m in modules if m != "__init__.py"]
    missing = [m for m in modules if f"`{m}`" not in table]
    assert not missing, f"docs/architecture.md's module table does not name: {missing}"


def test_the_module_table_names_no_module_that_is_gone() -> None:
    import re

    package = SERVICE / "src" / "ml_service"
    named = [m for m in re.findall(r"`([\w/]+\.py)`", _module_table()) if not m.startswith("tests/")]
    gone = [m for m in named if not (package / m).is_file()]
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"
