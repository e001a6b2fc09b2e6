"""The sealing rules as invariants, without a server: a payload opens as sealed only in its place,
and an action remembered is never taken again, whatever the order and however many there are."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.converter import WorkflowSerializationContext

from core.codec import EncryptionCodec, Keyring, new_key
from core.ids import ulid
from core.sealing import UNSEALED
from workflows.base import RecentActions

KEYS = Keyring.parse(f"k1:{new_key()}", "CODEC_KEYS")
names = st.text(min_size=1, max_size=40)
places = st.tuples(names, names)


@settings(max_examples=200, deadline=None)
@given(sealed_at=places, opened_at=places, data=st.binary(max_size=200))
def test_a_payload_opens_as_sealed_only_where_it_was_sealed(
    sealed_at: tuple[str, str], opened_at: tuple[str, str], data: bytes
) -> None:
    def context(place: tuple[str, str]) -> WorkflowSerializationContext:
        return WorkflowSerializationContext(namespace=place[0], workflow_id=place[1])

    original = Payload(metadata={"encoding": b"binary/plain"}, data=data)
    sender = EncryptionCodec(KEYS).with_context(context(sealed_at))
    worker = EncryptionCodec(KEYS, mark_unsealed=True).with_context(context(opened_at))

    async def round_trip() -> Payload:
        [sealed] = await sender.encode([original])
        [opened] = await worker.decode([sealed])
        return opened

    opened = asyncio.run(round_trip())
    if sealed_at == opened_at:
        assert opened == original
    else:
        assert opened.metadata[UNSEALED] == b"foreign"


START = datetime(2026, 12, 7, tzinfo=UTC)
action_ids = st.lists(
    st.tuples(st.integers(0, 10**9), st.integers(0, 2**80 - 1)).map(
        lambda pair: ulid(START + timedelta(milliseconds=pair[0]), pair[1])
    ),
    max_size=600,
)


@settings(max_examples=100, deadline=None)
@given(taken=action_ids, keep=st.integers(1, 300), carried_at=st.integers(0, 600))
def test_an_action_taken_is_never_taken_again(taken: list[str], keep: int, carried_at: int) -> None:
    """However many actions arrive, in whatever order, and across a continue-as-new at any
    point: each id taken is known from then on, and no more than KEEP are kept."""
    actions = RecentActions([])
    actions.KEEP = keep
    seen: list[str] = []
    for n, action_id in enumerate(taken):
        if n == carried_at:  # the next run starts from what the last one carried
            actions = RecentActions(actions.kept, actions.forgotten)
            actions.KEEP = keep
        if actions.knows(action_id):
            continue
        actions.remember(action_id)
        seen.append(action_id)
        assert all(actions.knows(old) for old in seen)
        assert len(actions.kept) <= keep
    assert len(set(seen)) == len(seen)  # nothing was taken twice
