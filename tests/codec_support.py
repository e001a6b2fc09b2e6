"""Encrypted histories in tests: read one as the server stores it, or decrypt one to check it in.

Recorded histories (tests/histories/) are checked in decrypted, so no key is ever committed; each
payload that was sealed keeps a `was-sealed` mark, and the replay seals it again under the session's
key. A payload without the mark replays in clear, as it was sent (or, in the histories recorded
before the mark, as a history from before encryption).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import History
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import PayloadCodec, WorkflowSerializationContext
from temporalio.worker import Replayer

from core.codec import ENCODING, KEY_ID, NONCE_BYTES, WORKFLOW_ID, EncryptionCodec, Keyring
from core.settings import Settings
from core.temporal import data_converter
from worker import WORKFLOWS
from workflows import sandbox_runner
from workflows.sealed import RefuseUnsealed

PAYLOAD = Payload.DESCRIPTOR.full_name
HISTORIES = Path(__file__).parent / "histories"
WAS_SEALED = "was-sealed"  # b"1": sealed before places (key id alone); b"bound": to its place
LEGACY, BOUND = b"1", b"bound"
REPLAY_NAMESPACE = "default"  # the namespace the tests' histories are recorded and replayed in


def replayer(*, sealed: bool = True, **options: Any) -> Replayer:
    """A replayer that runs workflows as the worker does: its data converter (the session's key,
    from CODEC_KEYS) and its refusal of plain input; `sealed=False` as a worker without that rule
    (the time-skipping tests' fake worker, whose client seals nothing)."""
    return Replayer(
        workflows=WORKFLOWS,
        data_converter=data_converter(Settings(), worker=True),
        interceptors=[RefuseUnsealed()] if sealed else [],
        workflow_runner=sandbox_runner(),
        namespace=REPLAY_NAMESPACE,
        **options,
    )


def seal_legacy(keyring: Keyring, payload: Payload) -> Payload:
    """A payload sealed as the release before places did: the key id alone as associated data."""
    cipher = keyring.cipher(keyring.current)
    assert cipher is not None
    nonce = os.urandom(NONCE_BYTES)
    data = cipher.encrypt(nonce, payload.SerializeToString(), keyring.current.encode())
    metadata = {"encoding": ENCODING, KEY_ID: keyring.current.encode()}
    return Payload(metadata=metadata, data=nonce + data)


async def replay_and_record(client: Client, history: WorkflowHistory, name: str) -> None:
    """Replay on today's code as the worker runs it (non-determinism raises); with
    RECORD_HISTORIES=1 also write it, decrypted, to tests/histories/<name>.json."""
    codec = client.data_converter.payload_codec
    await replayer(sealed=codec is not None).replay_workflow(history)
    if os.environ.get("RECORD_HISTORIES"):
        # a time-skipping server's client seals nothing: its history is in clear already
        opened = await decrypted(history, codec) if codec is not None else history
        (HISTORIES / f"{name}.json").write_text(opened.to_json())


async def raw_history(client: Client, workflow_id: str) -> bytes:
    """The history as the server stores it (protobuf bytes), fetched by a client without a codec."""
    plain = await Client.connect(
        client.service_client.config.target_host, namespace=client.namespace
    )
    history = await plain.get_workflow_handle(workflow_id).fetch_history()
    return History(events=history.events).SerializeToString()


async def decrypted(history: WorkflowHistory, codec: PayloadCodec) -> WorkflowHistory:
    """A copy of the history with every payload (inputs, results, failures, summaries) decoded,
    those that were sealed marked so."""

    async def open_one(payload: Payload) -> Payload:
        [opened] = await codec.decode([payload])
        if payload.metadata.get("encoding") == ENCODING:
            opened.metadata[WAS_SEALED] = BOUND if WORKFLOW_ID in payload.metadata else LEGACY
        return opened

    return await _each_payload(history, open_one)


async def recorded_sealed(history: WorkflowHistory) -> bool:
    """Whether the worker that recorded a decrypted history sealed payloads (so ran the rule)."""
    found = False

    async def look(payload: Payload) -> Payload:
        nonlocal found
        found = found or WAS_SEALED in payload.metadata
        return payload

    await _each_payload(history, look)
    return found


async def resealed(history: WorkflowHistory, codec: EncryptionCodec) -> WorkflowHistory:
    """A copy of a decrypted history with each payload marked as sealed sealed again: to the
    replayer's namespace and the history's workflow, or (recorded before places) as it was."""
    here = codec.with_context(
        WorkflowSerializationContext(namespace=REPLAY_NAMESPACE, workflow_id=history.workflow_id)
    )

    async def seal(payload: Payload) -> Payload:
        if WAS_SEALED not in payload.metadata:
            return payload
        payload = Payload(metadata=payload.metadata, data=payload.data)
        how = payload.metadata.pop(WAS_SEALED)
        if how == BOUND:
            [sealed] = await here.encode([payload])
            return sealed
        return seal_legacy(codec.keyring, payload)

    return await _each_payload(history, seal)


async def _each_payload(
    history: WorkflowHistory, change: Callable[[Payload], Awaitable[Payload]]
) -> WorkflowHistory:
    events = History(events=history.events)
    await _change_in_place(events, change)
    return WorkflowHistory(history.workflow_id, list(events.events))


async def _change_in_place(
    message: Message, change: Callable[[Payload], Awaitable[Payload]]
) -> None:
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
                item.CopyFrom(await change(item))
            else:
                await _change_in_place(item, change)
