"""Small runs of `make bench` scenarios (1, 6, 7, 8), and scenario 1's count of Temporal Cloud
actions.

The figures themselves are the bench's (docs/performance.md), never asserted here: this checks
that both sides do the same business through their real workers and that the cost is counted
as Temporal Cloud counts it.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    MarkerRecordedEventAttributes,
    UpsertWorkflowSearchAttributesEventAttributes,
)

from bench import actions
from bench.__main__ import pipeline_rows, statement_rows, team_rows, workspace_rows
from bench.cases import run_cases
from bench.env import dev_server
from bench.imap_loop import imap_rows, run_imap_loop
from bench.statements import run_statements
from bench.team import run_team
from bench.workspace import pad, projected, run_workspace, scaled_cache
from core.settings import load_settings
from db.migrate import upgrade
from tests.dovecot import DOVECOT, MISSING

E = EventType


def event(kind: EventType.ValueType, **attributes: object) -> HistoryEvent:
    return HistoryEvent(event_type=kind, **attributes)  # type: ignore[arg-type]


def marker(name: str, task: int) -> HistoryEvent:
    return event(
        E.EVENT_TYPE_MARKER_RECORDED,
        marker_recorded_event_attributes=MarkerRecordedEventAttributes(
            marker_name=name, workflow_task_completed_event_id=task
        ),
    )


def upsert(*keys: str) -> HistoryEvent:
    fields = {key: Payload(data=b'"x"') for key in keys}
    return event(
        E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        upsert_workflow_search_attributes_event_attributes=(
            UpsertWorkflowSearchAttributesEventAttributes(
                search_attributes=SearchAttributes(indexed_fields=fields)
            )
        ),
    )


def test_a_history_costs_what_temporal_cloud_bills() -> None:
    history = [
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED),
        marker("core_patch", 4),  # a patch and two local activities in one workflow task: one
        upsert(actions.CHANGE_VERSION),  # the SDK's, with the patch: free
        marker(actions.LOCAL_ACTIVITY_MARKER, 4),
        marker(actions.LOCAL_ACTIVITY_MARKER, 4),
        event(E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
        event(
            E.EVENT_TYPE_ACTIVITY_TASK_STARTED,  # its third try
            activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(attempt=3),
        ),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED),  # the same update: not again
        marker(actions.LOCAL_ACTIVITY_MARKER, 9),  # another workflow task: one more
        upsert("CaseStatus", "AssignedAgent"),  # one upsert, however many values
        event(E.EVENT_TYPE_TIMER_STARTED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
        event(E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED),
        event(E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED),
    ]
    assert actions.in_history(history) == {
        "workflow start": 1,
        "markers (one a workflow task)": 2,
        "activity (tries)": 3,
        "update": 1,
        "search-attribute upsert": 1,
        "timer": 1,
        "signal": 1,
        "child workflow": 2,
    }
    assert actions.steps(history) == 4  # 1 activity, 3 local activities
    # queries and heartbeats leave no event: the server's counts per case are added
    requests = {"frontend.QueryWorkflow": 1.5, "frontend.RecordActivityTaskHeartbeat": 2.0}
    per_case = actions.per_case([history, history[:1]], requests)
    assert per_case["workflow start"] == 1 and per_case["timer"] == 0.5
    assert per_case["query"] == 1.5 and per_case["heartbeat"] == 2.0
    assert per_case["total"] == pytest.approx((12 + 1) / 2 + 3.5)


async def test_scenario_one_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the bench's dev server sets a throwaway payload key: this test's, restored after it
    monkeypatch.setenv("CODEC_KEYS", f"bench-1:{base64.b64encode(os.urandom(32)).decode()}")
    settings = load_settings()
    tuning = {
        "max_cached_workflows": settings.max_cached_workflows,
        "max_concurrent_activities": settings.max_concurrent_activities,
        "max_concurrent_workflow_tasks": settings.max_concurrent_workflow_tasks,
    }
    async with dev_server("memory", tmp_path) as server:
        runs = [
            await run_cases(kind, server, tmp_path, tuning, 4, 2) for kind in ("bare", "pipeline")
        ]
    bare, pipeline = runs
    for run in runs:
        assert run.cases == 4 and run.seconds > 0
        cost = run.actions_per_case
        # every case: one start, its three updates (note, resolve, confirm)
        assert cost["workflow start"] == 1 and cost["update"] == 3
        assert cost["total"] == pytest.approx(sum(v for k, v in cost.items() if k != "total"))
    # the same four emails on both sides; the pipeline saves through local activities
    assert bare.actions_per_case["activity (tries)"] >= 4 + 1  # emails and saves
    assert pipeline.actions_per_case["activity (tries)"] == 4  # the emails alone
    assert pipeline.steps_per_case > 4  # and its saves, as local activities
    result: dict[str, Any] = {}
    rows = pipeline_rows(runs, result)
    assert [row.measure for row in rows][:4] == [
        "cases/s, 4 cases, 2 at once (best of 1)",
        "CPU ms per case",
        "steps per case (activities + local activities)",
        "Temporal Cloud billable actions per case",
    ]
    assert rows[3].target == "≤ bare" and rows[3].met is not None
    assert result["pipeline"][0]["concurrency"] == 2


async def test_scenario_seven_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workspace's pages over a few real cases and collections: every page answers 200 and
    each is timed (the figures are the bench's)."""
    monkeypatch.setenv("CODEC_KEYS", f"bench-7:{base64.b64encode(os.urandom(32)).decode()}")
    async with dev_server("memory", tmp_path) as server:
        run = await run_workspace(server, tmp_path, {}, workflows=8, rows=40, requests=6)
    assert (run.workflows, run.rows) == (8, 40) and run.seed_seconds > 0
    assert run.cache == 200  # the worker caches a fifth of them, as 1,000 of 5 times as many
    assert [page.what for page in run.pages] == ["queue page", "case page", "collections list"]
    for page in run.pages:
        assert page.statuses == {200: 6} and len(page.ms) == 6 and min(page.ms) > 0
    result: dict[str, Any] = {}
    rows = workspace_rows(run, result)
    assert [row.target for row in rows] == ["", "p95 ≤ 200", "p95 ≤ 300", ""]
    assert result["workspace"]["pages"][0]["pages"] == 6


async def test_scenario_eight_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A few agents drive the workspace over HTTP with locust while a small billing run imports:
    they sign in, open queues and cases, add notes, reply and resolve, and nothing fails (the
    figures are the bench's)."""
    monkeypatch.setenv("CODEC_KEYS", f"bench-8:{base64.b64encode(os.urandom(32)).decode()}")
    async with dev_server("memory", tmp_path) as server:
        run = await run_team(
            server, tmp_path, {}, agents=3, cases=9, lines=10, seconds=12, think=(0.1, 0.3)
        )
    assert run.errors == [] and run.import_code == 0 and run.import_seconds is not None
    signed = next(measured for measured in run.requests if measured.name == "sign-in: post")
    assert signed.requests >= 3 and signed.failures == 0  # each agent, once the hashing let it
    pages = run.all_of("page")  # how many depends on the machine's load: at least one
    assert pages.requests > 0 and pages.failures == run.all_of("action").failures == 0
    assert 0 < pages.p50_ms <= pages.p95_ms <= pages.max_ms
    result: dict[str, Any] = {}
    rows = team_rows(run, result)
    assert [row.target for row in rows[:3]] == ["", "p95 ≤ 200", "p95 ≤ 300"]
    assert rows[-1].target == "0" and rows[-1].met is True
    assert result["team"]["agents"] == 3


async def test_scenario_six_imap_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies put into a private Dovecot reach their cases through `mail watch` over IMAPS: each
    timed from its APPEND (the figures are the bench's)."""
    if not DOVECOT.exists():
        pytest.skip(MISSING)
    monkeypatch.setenv("CODEC_KEYS", f"bench-6:{base64.b64encode(os.urandom(32)).decode()}")
    async with dev_server("memory", tmp_path) as server:
        run = await run_imap_loop(server, tmp_path, {}, cases=2, replies=4, rate=4, idle=True)
    assert (run.replies, run.idle) == (4, True) and len(run.arrival_ms) == 4
    assert min(run.arrival_ms) > 0
    result: dict[str, Any] = {}
    [row] = imap_rows([run], result)
    assert row.target == "p95 ≤ 2000" and "IDLE" in row.measure
    assert result["imap_loop"][0]["replies"] == 4


def test_scenario_seven_caches_the_share_it_would_of_all_rows() -> None:
    assert scaled_cache(1000, 1000, 10_000) == 100
    assert scaled_cache(1000, 10_000, 10_000) == 1000
    assert scaled_cache(1000, 20_000, 10_000) == 1000  # never more than asked
    assert scaled_cache(1000, 3, 10_000) == 1


def test_scenario_seven_fills_the_projection_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    upgrade(url)
    pad(url, 30)
    assert projected(url) == (30, 30)
    pad(url, 30)  # up to, not on top of
    assert projected(url) == (30, 30)


async def test_scenario_nine_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small statement over a few real collections: the importer matches every line the raw
    side pays, the one from a payer nobody knows waits, and both sides are timed (the figures are
    the bench's)."""
    monkeypatch.setenv("CODEC_KEYS", f"bench-9:{base64.b64encode(os.urandom(32)).decode()}")
    async with dev_server("memory", tmp_path) as server:
        run = await run_statements(server, tmp_path, {}, invoices=4, lines=50, concurrency=4)
    ours, raw = run.side("import"), run.side("raw")
    assert ours.payments == raw.payments == 49 and ours.seconds > 0 and raw.seconds > 0
    assert ours.counts == {
        "rows": 50,
        "matched": 49,
        "ambiguous": 0,
        "unmatched": 1,
        "overpaid": 0,
        "duplicates": 0,
        "rejected": 0,
    }
    assert ours.peak_rss > 0
    result: dict[str, Any] = {}
    rows = statement_rows(run, result)
    assert [row.target for row in rows] == ["≥ 0.8", "≤ 300", ""]
    assert result["statements"]["lines"] == 50
