"""The package layout (ARCHITECTURE §1): every sub-package installed, dependencies pointing one way, ruff clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("models", "pipeline", "processes", "deploy")
# What each folder may import from lavaflow (ARCHITECTURE §1: pipeline → models, processes, deploy;
# deploy → models, processes; processes → lava only; models → torch/numpy only).
ALLOWED = {
    "models": {"models"},
    "processes": {"processes"},
    "deploy": {"deploy", "models", "processes"},
    "pipeline": {"pipeline", "models", "processes", "deploy"},
}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(("lavaflow", *parts)).removesuffix(".__init__")
            modules[name] = path
    return modules


def _lavaflow_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lavaflow."):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lavaflow."))
    return found


def test_every_package_folder_is_installed() -> None:
    config = tomli.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(("lavaflow", *init.parent.relative_to(REPO).parts))
        for folder in FOLDERS
        for init in (REPO / folder).rglob("__init__.py")
    }
    assert folders == listed, f"not listed: {folders - listed}; listed without a folder: {listed - folders}"
    mapping = config["tool"]["setuptools"]["package-dir"]
    assert mapping == {f"lavaflow.{folder}": folder for folder in FOLDERS}


def test_dependencies_point_one_way_without_cycles() -> None:
    modules = _modules()
    graph = {name: {m for m in _lavaflow_imports(path) if m in modules} for name, path in modules.items()}
    # the parse sees real imports (else every check below would pass on an empty graph)
    assert "lavaflow.models.feedback" in graph["lavaflow.pipeline.ide"]
    assert "lavaflow.models.netspec" in graph["lavaflow.deploy.quantize"]
    assert "lavaflow.deploy.lowering" in graph["lavaflow.pipeline.lava.run"]  # sub-packages are in the graph too
    lowering, seen = ["lavaflow.deploy.lowering"], set()
    while lowering:  # the lowering is pure: not even indirectly the reference simulator
        seen.add(module := lowering.pop())
        lowering.extend(graph[module] - seen)
    assert "lavaflow.models.reference" not in seen and "lavaflow.processes.topology" in seen
    for name, targets in graph.items():
        folder = name.split(".")[1]
        for target in targets:
            assert target.split(".")[1] in ALLOWED[folder], f"{name} imports {target}: against the layering"
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in graph[node]:
            if state.get(target) == 1:
                raise AssertionError(f"import cycle: {' → '.join([*stack, node, target])}")
            if target not in state:
                visit(target, [*stack, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_processes_folder_holds_no_scripts() -> None:
    """Lava executes every module beside a process while discovering models: no scripts or tests there."""
    paths = sorted((REPO / "processes").rglob("*.py"))
    assert len(paths) > 5  # the process modules are where the checks expect them
    for path in paths:
        text = path.read_text()
        assert "__main__" not in text, f"{path} looks like a script"
        assert not path.name.startswith("test"), f"{path}: tests do not belong in processes/"


def test_tests_folder_is_not_a_package() -> None:
    """lava wheels install a top-level `tests` package; ours must not compete with it."""
    assert not (REPO / "tests" / "__init__.py").exists()


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed in this environment")
    result = subprocess.run([ruff, "check", "--no-cache", str(REPO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# Every lavaflow module that imports Lava at the top, imported after something fixed the start method: what a
# training run's progress bar does before `simulate` (Lava's own import would raise "context has already been set").
_AFTER_FORK = """
import importlib, multiprocessing, sys
multiprocessing.set_start_method("fork")
for name in sys.argv[1:]:
    importlib.import_module(name)
from lavaflow.deploy.run_config import run_config
run_config("lava-float")
"""
_AFTER_SPAWN = """
import multiprocessing
multiprocessing.set_start_method("spawn")
try:
    import lavaflow.pipeline.lava.run
except RuntimeError as error:
    print(error)
"""


def _imports_lava(path: Path) -> bool:
    return any(isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset == 0
               and (getattr(node, "module", None) or node.names[0].name).split(".")[0] == "lava"
               for node in ast.parse(path.read_text()).body)


def test_lava_modules_import_in_any_order_after_fork_was_chosen() -> None:
    names = [name for name, path in _modules().items() if _imports_lava(path)]
    assert "lavaflow.pipeline.lava.session" in names and "lavaflow.processes.cuba.models" in names
    # The ones whose top-level Lava import comes first in the process: no guard of their own runs before it.
    result = subprocess.run([sys.executable, "-c", _AFTER_FORK, *sorted(names)], capture_output=True, text=True,
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_lava_refuses_another_start_method_with_the_fix() -> None:
    result = subprocess.run([sys.executable, "-c", _AFTER_SPAWN], capture_output=True, text=True, cwd=REPO,
                            timeout=600)
    assert "needs the 'fork' multiprocessing start method, but 'spawn'" in result.stdout, result.stderr[-3000:]
    assert "run the simulation in a fresh process" in result.stdout
