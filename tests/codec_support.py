"""Encrypted histories in tests: read one as the server stores it, or decrypt one to check it in.

Recorded histories (tests/histories/) are checked in decrypted, so they replay with any key and no
key is ever committed; the codec passes unencrypted payloads through on replay.
"""

from __future__ import annotations

import os
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import PayloadCodec
from temporalio.worker import Replayer

from worker import WORKFLOWS
from workflows import sandbox_runner

PAYLOAD = Payload.DESCRIPTOR.full_name
HISTORIES = Path(__file__).parent / "histories"


async def replay_and_record(client: Client, history: WorkflowHistory, name: str) -> None:
    """Replay on today's code with the client's converter (non-determinism raises); with
    RECORD_HISTORIES=1 also write it, decrypted, to tests/histories/<name>.json."""
    converter = client.data_converter
    replayer = Replayer(
        workflows=WORKFLOWS, data_converter=converter, workflow_runner=sandbox_runner()
    )
    await replayer.replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES"):
        assert converter.payload_codec is not None, "the dev server client encrypts"
        opened = await decrypted(history, converter.payload_codec)
        (HISTORIES / f"{name}.json").write_text(opened.to_json())


async def raw_history(client: Client, workflow_id: str) -> bytes:
    """The history as the server stores it (protobuf bytes), fetched by a client without a codec."""
    plain = await Client.connect(
        client.service_client.config.target_host, namespace=client.namespace
    )
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    return History(events=history.events).SerializeToString()


async def decrypted(history: WorkflowHistory, codec: PayloadCodec) -> WorkflowHistory:
    """A copy of the history with every payload (inputs, results, failures, summaries) decoded."""
    events = History(events=history.events)
    await _decode_in_place(events, codec)
    return WorkflowHistory(history.workflow_id, list(events.events))


async def _decode_in_place(message: Message, codec: PayloadCodec) -> None:
    for field, value in message.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            if entry.fields_by_name["value"].type != FieldDescriptor.TYPE_MESSAGE:
                continue
            items = list(value.values())
        else:
            items = list(value) if field.is_repeated else [value]
        for item in items:
            if item.DESCRIPTOR.full_name == PAYLOAD:
                [opened] = await codec.decode([item])
                item.CopyFrom(opened)
            else:
                await _decode_in_place(item, codec)
