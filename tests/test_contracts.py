"""Every activity and signal named in `core.contracts` is served under that name, taking the
argument type (and answering the result type) the contract writes: a renamed handler or a changed
model breaks here, not in a running workflow."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from typing import Any, get_type_hints

import pytest
from temporalio import activity, workflow

import activities
from core import contracts
from worker import WORKFLOWS


def served_activities() -> dict[str, Any]:
    """Each activity the project defines, by its registered name."""
    found: dict[str, Any] = {}
    for module in pkgutil.iter_modules(activities.__path__):
        loaded = importlib.import_module(f"activities.{module.name}")
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            for _, fn in inspect.getmembers(cls, inspect.isfunction):
                definition = activity._Definition.from_callable(fn)
                if definition is not None and definition.name is not None:
                    found[definition.name] = fn
    return found


@pytest.mark.parametrize("contract", contracts.ACTIVITIES, ids=lambda c: c.name)
def test_each_activity_is_served_with_its_types(
    contract: contracts.ActivityContract[Any, Any],
) -> None:
    fn = served_activities().get(contract.name)
    assert fn is not None, f"no activity is registered as {contract.name!r}"
    hints = get_type_hints(fn)
    argument = [name for name in inspect.signature(fn).parameters if name != "self"]
    assert len(argument) == 1 and hints[argument[0]] is contract.arg, (contract.name, hints)
    assert hints["return"] is contract.result, (contract.name, hints["return"])


@pytest.mark.parametrize("contract", contracts.SIGNALS, ids=lambda c: c.name)
def test_each_signal_is_handled_with_its_type(contract: contracts.SignalContract[Any]) -> None:
    handlers = [
        definition.fn
        for cls in WORKFLOWS
        for name, definition in workflow._Definition.must_from_class(cls).signals.items()
        if name == contract.name
    ]
    assert handlers, f"no workflow handles the signal {contract.name!r}"
    for fn in handlers:
        hints = get_type_hints(fn)
        argument = [name for name in inspect.signature(fn).parameters if name != "self"]
        assert hints[argument[0]] in (contract.arg, contract.arg | None), (contract.name, hints)


def test_no_workflow_names_an_activity_or_a_signal_in_a_string() -> None:
    """Names live in core.contracts only: a workflow module quoting one is calling around it."""
    names = {c.name for c in contracts.ACTIVITIES} | {c.name for c in contracts.SIGNALS}
    quoted = re.compile(r"[\"']([a-z_]+)[\"']")
    for path in Path(workflows_dir := "workflows").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not names & set(quoted.findall(text)), (workflows_dir, path.name)
