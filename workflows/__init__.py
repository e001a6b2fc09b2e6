"""Deterministic orchestration. Everything here imports only the models and the Temporal SDK."""

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# pydantic's email validation loads these lazily; they are pure and safe to share with the sandbox
PASSTHROUGH = ("email_validator", "idna", "dns", "pydantic", "pydantic_core", "annotated_types")


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )
