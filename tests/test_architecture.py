"""The layout holds: imports point down, the adapters stay thin, the API loads no CLI library.

Layers, bottom up: `core` (models, settings, ids, formatting) imports nothing of ours above it;
`db`, `workflows`, `intake` and `reporting` stand on `core` (`reporting` also reads `db`);
`activities` on `core` and `db`; `service` is the one Temporal client layer over them; `api`, the
workspace `web` and the CLI `cli` are adapters over `service`; `starter.py` is the CLI's entry
point. Only tests import `starter` and `cli`.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {
    "core",
    "db",
    "workflows",
    "activities",
    "intake",
    "reporting",
    "service",
    "api",
    "web",
    "cli",
    "starter",
    "worker",
    "bench",
    "chaos",
    "demo",
    "scripts",
    "tests",
}
# what each part may import of ours (itself included)
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "db": {"core", "db"},
    "workflows": {"core", "workflows"},
    "intake": {"core", "intake"},
    "reporting": {"core", "db", "reporting"},
    "activities": {"core", "db", "activities"},
    "service": {"core", "db", "workflows", "intake", "reporting", "service"},
    # (and db: the intake keeps its idempotency keys there)
    "api": {"core", "db", "service", "api"},
    # (and api.serving: every ASGI app of ours is served the same way)
    "web": {"core", "service", "web", "api"},
    "cli": {"core", "intake", "reporting", "service", "cli"},
    "starter": {"cli"},
    "worker": {"core", "db", "workflows", "activities"},
    # the harnesses drive the product through the service (and build workers as tests do)
    "bench": OURS - {"starter", "cli", "api"},
    "chaos": OURS - {"starter", "cli", "api", "bench", "web"},
    # the demo seeds its partner through the service, as the workspace would
    "demo": {"core", "service", "demo"},
    "scripts": {"core"},
}


def part_of(path: Path) -> str:
    relative = path.relative_to(ROOT)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported(path: Path) -> set[str]:
    """The top-level names of ours that a module imports (at any depth in the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    # scripts/ is a plain folder: chaos imports `dev` from it by path
    return {"scripts" if name == "dev" else name for name in names} & OURS


SOURCES = sorted(
    path
    for path in ROOT.rglob("*.py")
    if not {".venv", "var", "tests", "build"} & set(path.relative_to(ROOT).parts)
    and part_of(path) in ALLOWED
)


def test_every_part_is_checked() -> None:
    assert {part_of(path) for path in SOURCES} == set(ALLOWED)


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_imports_point_down(path: Path) -> None:
    part = part_of(path)
    wrong = imported(path) - ALLOWED[part]
    assert not wrong, f"{path.relative_to(ROOT)} ({part}) imports {', '.join(sorted(wrong))}"


def test_the_check_can_fail(tmp_path: Path) -> None:
    upward = tmp_path / "module.py"
    upward.write_text("from db.session import make_engine\nimport service.errors\n")
    assert imported(upward) - ALLOWED["core"] == {"db", "service"}


def test_only_tests_import_the_cli() -> None:
    importers = [
        str(path.relative_to(ROOT))
        for path in SOURCES
        if {"starter", "cli"} & imported(path) and part_of(path) not in {"starter", "cli"}
    ]
    assert importers == []


ADAPTERS = [path for path in SOURCES if part_of(path) in {"cli", "web"}]


@pytest.mark.parametrize("path", ADAPTERS, ids=[str(p.relative_to(ROOT)) for p in ADAPTERS])
def test_adapter_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines < 400, f"{path.relative_to(ROOT)} has {lines} lines: split it by area"


def _loaded_by(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    # a clean interpreter: this test process has imported everything already
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {name.split(".")[0] for name in json.loads(done.stdout)}


def test_the_api_loads_no_cli_or_chart_library() -> None:
    loaded = _loaded_by("api.app")
    assert "service" in loaded and "fastapi" in loaded  # the check sees what the app imports
    assert not {"typer", "rich", "plotly", "starter", "cli"} & loaded


def test_the_workspace_loads_no_cli_or_chart_library() -> None:
    loaded = _loaded_by("web.app")
    assert "service" in loaded and "jinja2" in loaded
    assert not {"typer", "rich", "plotly", "starter", "cli"} & loaded


def test_the_worker_loads_no_cli_or_web_library() -> None:
    loaded = _loaded_by("worker")
    assert "activities" in loaded and "workflows" in loaded
    # (httpx, which Partner Center's client uses, loads rich for a command line of its own)
    assert not {"typer", "plotly", "starter", "cli", "fastapi", "uvicorn", "service"} & loaded


MODELS = sorted((ROOT / "core" / "models").glob("*.py"))


@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_model_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines < 400, f"{path.relative_to(ROOT)} has {lines} lines: split it by what it models"


def _module_imports(path: Path) -> set[str]:
    """The core.models modules a model module imports at its top (a function's import is lazy)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core.models."):
            found.add(node.module.rpartition(".")[2])  # type: ignore[union-attr]
    return found


def test_models_import_no_circle() -> None:
    """Each model module stands on the ones below it: the graph of their imports has no cycle."""
    graph = {path.stem: _module_imports(path) for path in MODELS if path.stem != "__init__"}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " → ".join((*path, name))
        if name in done:
            return
        for below in graph.get(name, set()):
            visit(below, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


SHELLS = sorted((ROOT / "workflows").glob("*/workflow.py"))


@pytest.mark.parametrize("path", SHELLS, ids=[p.parent.name for p in SHELLS])
def test_workflow_shells_stay_thin(path: Path) -> None:
    """A workflow class is a shell over its rules: at most 350 lines."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 350, f"{path.relative_to(ROOT)} has {lines} lines: move rules to rules.py"


# each workflow's rules and their pure helpers: everything in its package but the shell (the
# Temporal class, its calls to other workflows, what it publishes to search attributes)
# handlers.py: a shell's handlers of one concern, mixed into its workflow class (account credit)
SHELL_MODULES = {"workflow.py", "calls.py", "views.py", "handlers.py", "__init__.py"}
RULES_MODULES = sorted(
    [ROOT / "workflows" / "effects.py"]
    + [p for p in (ROOT / "workflows").glob("*/*.py") if p.name not in SHELL_MODULES]
)


@pytest.mark.parametrize(
    "path", RULES_MODULES, ids=[str(p.relative_to(ROOT)) for p in RULES_MODULES]
)
def test_rules_import_nothing_of_temporal(path: Path) -> None:
    """A workflow's rules stand on core/ and on each other alone, so they run without a server
    (read statically: importing one runs its package's __init__, which loads the shell)."""
    pure = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in RULES_MODULES}
    for name in imported_modules(path):
        assert not name.startswith("temporalio"), (path.name, name)
        assert not name.startswith("workflows") or name in pure, (path.name, name)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    return found | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
