"""The dependency rule holds: import-linter's contracts from pyproject.toml, run as part of the suite."""

from __future__ import annotations

import ast
import os
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tasks", "worker", "reconciler", "models")


def test_import_linter_contracts_are_kept(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert code == 0, report
    assert "BROKEN" not in report and "KEPT" in report


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    """Imports inside a function with no comment on their line or the line above saying why."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, (ast.Import, ast.ImportFrom)) and not _explained(lines, inner.lineno - 1):
                found.append((inner.lineno, lines[inner.lineno - 1].strip()))
    return found


def _explained(lines: list[str], index: int) -> bool:
    """A comment on the import's line, or above the block of imports it stands in."""
    if "#" in lines[index]:
        return True
    while index > 0:
        index -= 1
        text = lines[index].strip()
        if text.startswith("#"):
            return True
        if not text.startswith(("from ", "import ")):
            return False
    return False


def test_every_import_inside_a_function_says_why():
    """Lazy imports exist for start-up time only, each with a comment; none may hide a cycle (the
    acyclic contract above would see it anyway)."""
    offenders = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            found = _function_level_imports(path)
            if found:
                offenders[os.path.relpath(path, ROOT)] = found
    assert offenders == {}
