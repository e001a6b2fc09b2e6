"""Reading what the Temporal UI shows, through the client: current details, the summaries in a
history, and polling for what is eventually consistent (visibility, effects after an update)."""

from __future__ import annotations

from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    """The UI's "Current Details": the SDK answers them to the built-in metadata query."""
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details: str = metadata.current_details
    return details


async def _text(client: Client, payload: Payload) -> str:
    text: str = (await client.data_converter.decode([payload], [str]))[0]
    return text


LOCAL_ACTIVITY_MARKER = "core_local_activity"


async def history_summaries(
    client: Client, handle: WorkflowHandle[Any, Any]
) -> dict[str, list[str]]:
    """Summaries of the activities (local ones too: their markers), timers and child workflows,
    as the history shows them; an event of those kinds without one fails the test."""
    kinds = {
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activities",
        EventType.EVENT_TYPE_TIMER_STARTED: "timers",
        EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "children",
    }
    found: dict[str, list[str]] = {kind: [] for kind in kinds.values()}
    async for event in handle.fetch_history_events():
        kind = kinds.get(event.event_type)
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            if event.marker_recorded_event_attributes.marker_name != LOCAL_ACTIVITY_MARKER:
                continue  # a patch marker: the SDK's, it names no step
            kind = "activities"
        if kind is None:
            continue
        assert event.user_metadata.HasField("summary"), f"event {event.event_id} has no summary"
        found[kind].append(await _text(client, event.user_metadata.summary))
    return found
