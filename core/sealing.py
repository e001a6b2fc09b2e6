"""What the worker knows of each value a workflow gets: whether it was sealed to its place, for
which handler, as which action. The key is an integrity credential, not only a secret.

- The codec (core/codec.py) binds every sealed payload to its namespace and workflow id (the SDK's
  serialization context). The worker's codec passes a payload that does not open there on with the
  ``unsealed`` metadata entry, saying why: sent in clear, sealed for another workflow, or claiming
  to be sealed and not opening. One sealed before payloads were bound gets ``sealed-legacy``.
- Whoever sends a start, update, signal or query stamps each argument, inside the sealed bytes,
  with the handler it is for (``update:waive``) and an action id unique to that call: the clients'
  interceptor (core/temporal.py) and the workflows' own (workflows/sealed.py) wrap arguments in
  `Stamped`, and this payload converter writes the stamp into the payload's metadata.
- On the worker, the converter remembers what it learnt of each value it made; the workflow's
  interceptor (workflows/sealed.py) asks it, for the arguments a handler is about to get.

No cryptography here: the workflow side imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import PayloadConverter
from temporalio.exceptions import ApplicationError

UNSEALED = "unsealed"  # the worker's codec: this payload did not open where it arrived (why)
LEGACY = "sealed-legacy"  # the worker's codec: sealed under a key, but bound to no place
FOR = "sealed-for"  # inside the sealed bytes: the handler the sender meant it for
ACTION = "action-id"  # inside the sealed bytes: the call it belongs to
REFUSED = "Unsealed"  # the error type of a refusal, left readable for a sender without the key
NOT_SEALED = "is not sealed under a configured key (a client without the encryption key sent it)"


class SealState(StrEnum):
    SEALED = "sealed"  # opened under a configured key, bound to this namespace and workflow
    LEGACY = "legacy"  # opened, but sealed before payloads were bound to their place
    CLEAR = "clear"  # not sealed at all
    FOREIGN = "foreign"  # sealed for another namespace or workflow
    BROKEN = "broken"  # claims to be sealed and does not open under any configured key


WHY = {
    SealState.CLEAR: NOT_SEALED,
    SealState.FOREIGN: "was sealed for another workflow (copied from its history)",
    SealState.BROKEN: "claims to be sealed and does not open under a configured key",
    SealState.LEGACY: "was sealed by a release that did not bind payloads to their place",
}


@dataclass(frozen=True)
class Stamp:
    handler: str  # e.g. "update:waive", "signal:place_holds", "start:BillingCaseWorkflow"
    action_id: str


@dataclass(frozen=True)
class Stamped:
    """An argument on its way out, with the stamp this converter writes into its payload."""

    value: Any
    stamp: Stamp


@dataclass(frozen=True)
class Seal:
    """What the worker learnt of one value from its payload."""

    state: SealState
    handler: str | None = None
    action_id: str | None = None


# what a value the worker made itself comes with (a continued run's input, an activity's result):
# sealed where it is, no stamp. Only the others are remembered, so nothing piles up.
INTERNAL = Seal(SealState.SEALED)


def stamped(args: Sequence[Any], handler: str, action_id: str) -> list[Any]:
    return [Stamped(arg, Stamp(handler, action_id)) for arg in args]


def refusal(message: str) -> ApplicationError:
    return ApplicationError(message, type=REFUSED, non_retryable=True)


def seal_of(payload: Payload) -> Seal:
    metadata = payload.metadata
    state = SealState.SEALED
    if UNSEALED in metadata:
        why = metadata[UNSEALED].decode("ascii", "replace")
        state = SealState(why) if why in set(SealState) else SealState.CLEAR
    elif LEGACY in metadata:
        state = SealState.LEGACY
    handler, action = metadata.get(FOR), metadata.get(ACTION)
    return Seal(
        state,
        handler.decode("utf-8", "replace") if handler is not None else None,
        action.decode("utf-8", "replace") if action is not None else None,
    )


class StampingPayloadConverter(PydanticPayloadConverter):
    """Pydantic payloads; a `Stamped` value is converted as its value, its stamp in the metadata
    (which the codec then seals with it)."""

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        plain = [value.value if isinstance(value, Stamped) else value for value in values]
        payloads = super().to_payloads(plain)
        for value, payload in zip(values, payloads, strict=True):
            if isinstance(value, Stamped):
                payload.metadata[FOR] = value.stamp.handler.encode()
                payload.metadata[ACTION] = value.stamp.action_id.encode()
        return payloads


class SealAwarePayloadConverter(StampingPayloadConverter):
    """The worker's: it also remembers the seal of each value it made from a payload.

    The SDK converts a workflow's start input and its update, signal and query arguments with one
    converter per workflow (the one ``workflow.payload_converter()`` returns)."""

    def __init__(self) -> None:
        super().__init__()
        # id -> (the value itself, held so that no other value can take its id meanwhile; its seal)
        self._seals: dict[int, tuple[Any, Seal]] = {}

    def from_payloads(
        self, payloads: Sequence[Payload], type_hints: list[type] | None = None
    ) -> list[Any]:
        seals = [seal_of(payload) for payload in payloads]
        try:
            values = super().from_payloads(payloads, type_hints)
        except Exception as err:
            refused = [s for s in seals if s.state not in (SealState.SEALED, SealState.LEGACY)]
            if not refused:
                raise
            # refused, not retried: a start fails at once instead of its task failing for ever;
            # the error's text (it may quote the input) stays out of a failure left in clear
            raise refusal(
                f"input refused: it {WHY[refused[0].state]}, and is not valid either "
                f"({type(err).__name__})"
            ) from None
        for value, seal in zip(values, seals, strict=True):
            if seal != INTERNAL:
                self._seals[id(value)] = (value, seal)
        return values

    def take_seals(self, values: Sequence[Any]) -> list[Seal]:
        """The seal of each of `values`; forgets them (each conversion is asked once)."""
        found = []
        for value in values:
            kept, seal = self._seals.pop(id(value), (None, INTERNAL))
            found.append(seal if kept is value else INTERNAL)
        return found


def seal_aware(converter: PayloadConverter) -> SealAwarePayloadConverter | None:
    """The seal-aware converter inside `converter` (the SDK wraps the workflow's one for its
    transfer types), or None."""
    inner = getattr(converter, "_inner_payload_converter", converter)
    return inner if isinstance(inner, SealAwarePayloadConverter) else None
