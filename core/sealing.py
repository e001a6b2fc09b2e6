"""Which values reached the worker in clear: the key is an integrity credential, not only a secret.

The worker's codec (``EncryptionCodec(..., mark_unsealed=True)``) passes a payload that was not
sealed under a configured key on with the ``unsealed`` metadata entry; this payload converter
converts it as usual and remembers the value it made. The SDK converts a workflow's start input and
its update, signal and query arguments with one converter per workflow (the one
``workflow.payload_converter()`` returns), so the workflow's interceptor (workflows/sealed.py) asks
it, for the arguments a handler is about to get, whether any came in clear.

No cryptography here: the workflow side imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import PayloadConverter
from temporalio.exceptions import ApplicationError

UNSEALED = "unsealed"  # the metadata entry the worker's codec adds to a payload it got in clear
REFUSED = "Unsealed"  # the error type of a refusal, left readable for a sender without the key
NOT_SEALED = "is not sealed under a configured key (a client without the encryption key sent it)"
_ABSENT = object()


def refusal(message: str) -> ApplicationError:
    return ApplicationError(message, type=REFUSED, non_retryable=True)


class SealAwarePayloadConverter(PydanticPayloadConverter):
    """Pydantic payloads, with a table of the values that came from a payload marked unsealed."""

    def __init__(self) -> None:
        super().__init__()
        # id -> the value itself, held so that no other value can take its id meanwhile
        self._unsealed: dict[int, Any] = {}

    def from_payloads(
        self, payloads: Sequence[Payload], type_hints: list[type] | None = None
    ) -> list[Any]:
        try:
            values = super().from_payloads(payloads, type_hints)
        except Exception as err:
            if not any(UNSEALED in payload.metadata for payload in payloads):
                raise
            # refused, not retried: a start fails at once instead of its task failing for ever;
            # the error's text (it may quote the input) stays out of a failure left in clear
            raise refusal(
                f"input refused: it {NOT_SEALED}, and is not valid either ({type(err).__name__})"
            ) from None
        for payload, value in zip(payloads, values, strict=True):
            if UNSEALED in payload.metadata:
                self._unsealed[id(value)] = value
        return values

    def take_unsealed(self, values: Sequence[Any]) -> bool:
        """Whether any of `values` came in clear; forgets them (each conversion is asked once)."""
        found = [self._unsealed.pop(id(value), _ABSENT) is value for value in values]
        return any(found)


def seal_aware(converter: PayloadConverter) -> SealAwarePayloadConverter | None:
    """The seal-aware converter inside `converter` (the SDK wraps the workflow's one for its
    transfer types), or None."""
    inner = getattr(converter, "_inner_payload_converter", converter)
    return inner if isinstance(inner, SealAwarePayloadConverter) else None
