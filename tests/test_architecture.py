"""Limits every module of the product keeps, so that a newcomer can read any part of it: no
function above a cyclomatic complexity of 20 (radon's grade C or better) and no module longer
than 500 lines (migrations aside, they are generated). The layer order is checked by
import-linter (`lint-imports`, pyproject.toml), which `make test` runs before this suite."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_visit
from radon.visitors import Function

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mfplatform", "mfengine", "tenants")
MAX_COMPLEXITY = 20
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
                  if "migrations" not in path.relative_to(ROOT).parts)


def test_the_modules_are_found():
    names = {path.relative_to(ROOT).as_posix() for path in _modules()}
    assert {"mfplatform/registry/services.py", "mfengine/base.py", "tenants/models.py"} <= names
    assert not any("/migrations/" in name for name in names)


def test_no_function_is_too_complex():
    too_complex = [
        f"{path.relative_to(ROOT)}:{block.lineno} {block.fullname} ({block.complexity})"
        for path in _modules() for block in cc_visit(path.read_text())
        if isinstance(block, Function) and block.complexity > MAX_COMPLEXITY]
    assert not too_complex, (f"cyclomatic complexity above {MAX_COMPLEXITY}: split them "
                             f"into named steps:\n" + "\n".join(too_complex))


def test_no_module_is_too_long():
    too_long = [f"{path.relative_to(ROOT)} ({n} lines)" for path in _modules()
                if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not too_long, f"modules above {MAX_LINES} lines:\n" + "\n".join(too_long)
