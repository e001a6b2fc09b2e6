"""What a case costs on Temporal Cloud: its billable actions, counted as Temporal Cloud counts them.

From https://docs.temporal.io/cloud/actions (summed up in docs/performance.md): a workflow start,
each activity start or retry, all the markers of one workflow task (local activities, patches)
as one, each timer, each search-attribute upsert (not those given at the start, nor the SDK's
TemporalChangeVersion that goes with a patch), each signal, each update, each query, each
heartbeat that reaches the server, a child workflow as two. Most are in the history; queries and
heartbeats are not, so the bench takes those from the dev server's request counts over the same
cases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

LOCAL_ACTIVITY_MARKER = "core_local_activity"  # the SDKs' marker name for a local activity
# the search attribute the SDK upserts with a patch: "exempt from Action counting"
CHANGE_VERSION = "TemporalChangeVersion"

# one action each
_ONE = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "workflow start",
    EventType.EVENT_TYPE_TIMER_STARTED: "timer",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
}
# the dev server's RPCs that are actions and leave nothing in a history
OUTSIDE_HISTORY = {
    "frontend.QueryWorkflow": "query",
    "frontend.RecordActivityTaskHeartbeat": "heartbeat",
    "frontend.RecordActivityTaskHeartbeatById": "heartbeat",
}


def in_history(events: Iterable[HistoryEvent]) -> Counter[str]:
    """The billable actions one workflow run's history shows, by kind."""
    counts: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    for event in events:
        kind = _ONE.get(event.event_type)
        if kind is not None:
            counts[kind] += 1
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            if set(fields.indexed_fields) - {CHANGE_VERSION}:  # the SDK's own upsert is free
                counts["search-attribute upsert"] += 1
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # written once, for the attempt that ended it: its number counts every try
            counts["activity (tries)"] += event.activity_task_started_event_attributes.attempt
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker_tasks.add(
                event.marker_recorded_event_attributes.workflow_task_completed_event_id
            )
        elif event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            counts["child workflow"] += 2
    if marker_tasks:
        counts["markers (one a workflow task)"] = len(marker_tasks)
    return counts


def steps(events: Iterable[HistoryEvent]) -> int:
    """Activities and local activities a run carried out: the same business on both sides."""
    return sum(
        1
        for event in events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        or (
            event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
        )
    )


def per_case(
    histories: list[list[HistoryEvent]], requests_per_case: Mapping[str, float]
) -> dict[str, float]:
    """Mean billable actions a case, by kind, and their "total"."""
    counted: Counter[str] = Counter()
    for events in histories:
        counted.update(in_history(events))
    actions = {kind: n / len(histories) for kind, n in sorted(counted.items())}
    for operation, kind in OUTSIDE_HISTORY.items():
        if requests_per_case.get(operation):
            actions[kind] = actions.get(kind, 0.0) + requests_per_case[operation]
    actions["total"] = sum(actions.values())
    return {kind: round(n, 2) for kind, n in actions.items()}


def main(paths: list[str]) -> None:
    """`python -m bench.actions HISTORY.json …`: the billable actions each recorded history
    shows (queries and heartbeats leave none in a history: not counted here)."""
    from pathlib import Path

    from temporalio.client import WorkflowHistory

    for path in map(Path, paths):
        history = WorkflowHistory.from_json(path.stem, path.read_text())
        counted = in_history(history.events)
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counted.items()))
        print(f"{path.stem}: {sum(counted.values())} actions ({kinds})")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
