"""The patch registry: every `workflow.patched` the workflows still ask, in one place.

Code changes reach running workflows through Worker Versioning (core/deployment.py): cases,
collections and 21Vianet invoices are pinned to the build they started on, so a change to them
needs no patch. Accounts never end and auto-upgrade to the current build at their next workflow
task: a change to the commands an account issues is the one thing that still needs a patch, and
it is registered here with when it came, why, and when it may go.

The life cycle (temporalio/samples-python `patching/`): `applies(PATCH)` guards the new code
beside the old; once no run that started before it is open (`removable_when` says how to check),
the old branch goes and `deprecated=True` makes it `workflow.deprecate_patch`; a release later the
entry goes too. 1.0 is the baseline: every patch before it was retired, so the registry is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from temporalio import workflow


@dataclass(frozen=True)
class Patch:
    """One change to a workflow that replaces code a running workflow may still have run."""

    id: str  # the marker in the history: never reused, never renamed
    added: date
    why: str
    # the condition to remove it, e.g. "every account has continued as new since 1.1"
    removable_when: str
    deprecated: bool = False  # the old branch is gone: histories with the marker still replay


# Each entry: `NAME = Patch(...)`, then listed in PATCHES. None at the 1.0 baseline.
PATCHES: tuple[Patch, ...] = ()


def applies(patch: Patch) -> bool:
    """Whether this run takes the new code of `patch` (`workflow.patched`); a deprecated patch
    only marks the history, and the new code always runs."""
    if patch not in PATCHES:
        raise ValueError(f"patch {patch.id!r} is not in the registry (workflows/patches.py)")
    if patch.deprecated:
        workflow.deprecate_patch(patch.id)
        return True
    return workflow.patched(patch.id)
