"""The effects every workflow's rules answer besides their own: an event for the timeline and an
email. Pure data: the shell records the one and queues the other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from core.models import Attention, EventKind
from core.models.email_data import EmailData

WORKFLOW = "workflow"  # the actor of what a workflow records of its own accord


@dataclass(frozen=True)
class Record:
    """Effect: an event on the timeline (now, in the order the effects come)."""

    kind: EventKind
    actor: str
    text: str = ""
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Flag:
    """Effect: a person must act, told once until the flag is cleared: `reason` is what the
    NeedsAttention attribute, the 需要处理 queue and the manager's email say (in each reader's
    language), `why` the timeline's line."""

    why: str
    reason: Attention = Attention.STALLED


@dataclass(frozen=True)
class Email:
    """Effect: one email, to the address its recipient has as it is queued."""

    data: EmailData
    to: str
