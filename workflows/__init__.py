"""Deterministic orchestration. Everything here imports only the models and the Temporal SDK."""

import compileall
from pathlib import Path

from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# pydantic's email validation loads these lazily; they are pure and safe to share with the sandbox
PASSTHROUGH = ("email_validator", "idna", "dns", "pydantic", "pydantic_core", "annotated_types")


def cache_bytecode(folder: Path = Path(__file__).parent) -> None:
    """The sandbox imports a workflow module anew for every workflow it starts or replays. With no
    bytecode on disk (PYTHONDONTWRITEBYTECODE, a fresh checkout) each of those imports compiles the
    source again (7 % of the worker's CPU in `make bench`): write it once. Where the folder is not
    writable this changes nothing and the imports compile as before."""
    compileall.compile_dir(folder, maxlevels=0, quiet=2)


def sandbox_runner() -> SandboxedWorkflowRunner:
    cache_bytecode()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


def workflow_runner(sandboxed: bool) -> WorkflowRunner:
    """The worker's runner (the `WORKFLOW_SANDBOX` setting): the sandbox catches a workflow that
    reads the clock, draws randomness or does I/O, at a cost in CPU and memory per workflow."""
    return sandbox_runner() if sandboxed else UnsandboxedWorkflowRunner()
