"""The workflow modules stay light: the sandbox re-imports a workflow's module for every workflow it
starts or replays, so a heavy import there costs on every case (and memory in every cached one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from core.settings import Settings
from workflows import workflow_runner

ROOT = Path(__file__).resolve().parent.parent
# every module under workflows/, a workflow's package (its rules, its shell) included
WORKFLOW_MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in (ROOT / "workflows").rglob("*.py")
    if path != ROOT / "workflows" / "__init__.py"
)
# I/O libraries belong to the activities and the CLI, never to the deterministic side
FORBIDDEN = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "jinja2",
    "markupsafe",
    "babel",
    "sendgrid",
    "python_http_client",
    "httpx",
    "httpcore",
    "h11",
    "requests",
    "urllib3",
    "aiohttp",
    "http.client",
    "fastapi",
    "starlette",
    "uvicorn",
    "typer",
    "rich",
    "cryptography",
    "prometheus_client",
    "opentelemetry",
    "activities",
    "db",
    "api",
    "intake",
)


def test_workflow_modules_import_no_io_library() -> None:
    assert "workflows.billing_case" in WORKFLOW_MODULES
    assert "workflows.collections" in WORKFLOW_MODULES
    imports = "; ".join(f"import {name}" for name in WORKFLOW_MODULES)
    code = f"import json, sys; {imports}; print(json.dumps(sorted(sys.modules)))"
    # a clean interpreter: this test process has imported everything already
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    found = sorted(
        name
        for name in loaded
        if any(name == bad or name.startswith(f"{bad}.") for bad in FORBIDDEN)
    )
    assert not found, f"{', '.join(WORKFLOW_MODULES)} import {', '.join(found)}"


def test_the_worker_runs_without_the_sandbox_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKFLOW_SANDBOX", raising=False)
    default = Settings(_env_file=None)
    assert default.workflow_sandbox is False
    assert isinstance(workflow_runner(default.workflow_sandbox), UnsandboxedWorkflowRunner)
    monkeypatch.setenv("WORKFLOW_SANDBOX", "true")
    sandboxed = Settings(_env_file=None)
    assert sandboxed.workflow_sandbox is True
    assert isinstance(workflow_runner(sandboxed.workflow_sandbox), SandboxedWorkflowRunner)


def test_the_tests_run_the_workflows_in_the_sandbox() -> None:
    """The safety net the production default does without (tests/conftest.py)."""
    assert Settings(_env_file=None).workflow_sandbox is True
