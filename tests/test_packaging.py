"""The shape of the distribution: the import contract holds and a wrong import breaks it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pgarchitect", "exporter", "analyzer")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter with the contracts of `root`/pyproject.toml over the packages in `root`."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache", "pyproject.toml"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_the_import_contract() -> None:
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_the_exporter_importing_the_analyzer_breaks_it(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    model = tmp_path / "exporter" / "model.py"
    model.write_text(model.read_text() + "\nimport analyzer.report\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "exporter is not allowed to import analyzer:" in proc.stdout
    assert "- exporter.model -> analyzer.report" in proc.stdout
