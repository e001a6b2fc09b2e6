"""Replay every checked-in history on today's workflow code: non-determinism fails the run.

The histories are stored decrypted (see tests/codec_support.py): what was sealed is sealed again
under the session's key, and they replay as the worker runs them, with its refusal of plain input.
A history recorded in clear (by the time-skipping tests' worker, which has no codec and no such
rule) replays without the rule, as it ran.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from core.codec import EncryptionCodec
from core.models import CollectionsView, StartCollections
from core.settings import Settings
from core.temporal import data_converter
from tests.codec_support import recorded_sealed, replayer, resealed
from worker import WORKFLOWS
from workflows.collections import CollectionsWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_checked_in() -> None:
    assert HISTORIES, "tests/histories/ holds no recorded history"


def test_every_workflow_type_has_a_history() -> None:
    recorded = {
        WorkflowHistory.from_json(path.stem, path.read_text())
        .events[0]
        .workflow_execution_started_event_attributes.workflow_type.name
        for path in HISTORIES
    }
    assert {cls.__name__ for cls in WORKFLOWS} <= recorded


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path, codec_keys: str) -> None:
    codec = data_converter(Settings(codec_keys=SecretStr(codec_keys))).payload_codec
    assert isinstance(codec, EncryptionCodec)
    recorded = WorkflowHistory.from_json(path.stem, path.read_text())
    history = await resealed(recorded, codec)
    sealed = await recorded_sealed(recorded)
    result = await replayer(sealed=sealed).replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


# --------------------------------------------------------------------------- the safety net itself

RECORDED = Path(__file__).parent / "histories" / "collections_suspended_paid.json"


# defined in a test module: outside the sandbox, which would import pytest with it
@workflow.defn(name="CollectionsWorkflow", sandboxed=False)
class CarelessChange(CollectionsWorkflow):
    """A behaviour change shipped as is: a pause before the first step, for every workflow."""

    @workflow.run
    async def run(self, data: StartCollections) -> CollectionsView:
        await workflow.sleep(timedelta(minutes=5))
        return await super().run(data)


@workflow.defn(name="CollectionsWorkflow", sandboxed=False)
class PatchedChange(CollectionsWorkflow):
    """The same change behind `workflow.patched`: running workflows keep the old path."""

    @workflow.run
    async def run(self, data: StartCollections) -> CollectionsView:
        if workflow.patched("pause-before-first-step"):
            await workflow.sleep(timedelta(minutes=5))
        return await super().run(data)


@pytest.mark.parametrize(("changed", "replays"), [(CarelessChange, False), (PatchedChange, True)])
async def test_replay_catches_an_unpatched_change(
    changed: type, replays: bool, codec_keys: str
) -> None:
    history = WorkflowHistory.from_json(RECORDED.stem, RECORDED.read_text())
    replayer = Replayer(
        workflows=[changed],
        data_converter=data_converter(Settings(codec_keys=SecretStr(codec_keys))),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if replays:
        assert result.replay_failure is None
    else:
        assert isinstance(result.replay_failure, NondeterminismError)
