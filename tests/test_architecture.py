"""The shape of the house: light start-up, no runner/stage cycle, SQL only in the catalog package,
run-directory paths only in RunLayout."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "curate"
HEAVY = ("torch", "torchvision", "cleanlab", "pandas", "sklearn", "matplotlib")


def modules_loaded_by(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.splitlines()[-1].split())


@pytest.mark.parametrize("command", ["['stages']", "['validate', PIPELINE]", "['status', RUN]"])
def test_quick_commands_do_not_import_torch_or_cleanlab(command: str, pipeline_file: Path, tmp_path: Path):
    from curate.cli import main

    assert main(["run", str(pipeline_file), "--no-progress", "--only", "synsets"]) == 0
    code = (f"PIPELINE, RUN = {str(pipeline_file)!r}, {str(tmp_path / 'run')!r}\n"
            f"from curate.cli import main\nassert main({command}) == 0")
    loaded = modules_loaded_by(code)
    assert not {m.split(".")[0] for m in loaded} & set(HEAVY)


def test_the_runner_imports_no_stage():
    loaded = modules_loaded_by("import curate.runner")
    assert "curate.stages.base" in loaded
    assert not [m for m in loaded if m.startswith("curate.stages.") and m != "curate.stages.base"]


def string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def source_files(exclude: str) -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if exclude not in p.relative_to(PACKAGE).as_posix()]


def test_no_sql_outside_the_catalog_package():
    sql = re.compile(r"\b(SELECT\b.*\bFROM|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX)|"
                     r"DROP TABLE|ALTER TABLE|PRAGMA \w+)\b", re.DOTALL)
    found = [f"{p.relative_to(REPO)}:{line}" for p in source_files("catalog/") for line, text in string_constants(p)
             if sql.search(text)]
    assert found == []


def path_joins(path: Path) -> list[tuple[int, str]]:
    """``something / "name"`` joins in a module: (line, name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(n.lineno, n.right.value) for n in ast.walk(tree)
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and isinstance(n.right, ast.Constant)
            and isinstance(n.right.value, str)]


def test_run_directory_paths_are_joined_only_in_the_layout():
    names = {"catalog.sqlite", "config.yaml", "images", "logs", "curate.log", "report", "export", "benchmark",
             ".lock"}
    found = [f"{p.relative_to(REPO)}:{line} / {text!r}" for p in source_files("layout.py")
             for line, text in path_joins(p) if text in names]
    assert found == []
