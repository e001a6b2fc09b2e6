"""What an activity's failure means for its workflow: retry (transient: the database or a provider
is down or busy), or stop and ask a person (permanent: retrying the same input cannot help).

Permanent failures are raised as non-retryable `ApplicationError`s whose types the workflows list
(`workflows.base.PERMANENT_ERRORS`): the step is recorded, the workflow sets NeedsAttention and
waits for an operator. Everything else is left to Temporal's retry policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from jinja2 import TemplateError
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    StatementError,
)
from temporalio.exceptions import ApplicationError

DATA_REFUSED = "DataRefused"
RENDER_FAILED = "RenderFailed"
# how much of the database's or the template's own message a failure carries
DETAIL_CHARS = 300


def _detail(err: BaseException) -> str:
    text = str(getattr(err, "orig", None) or err).strip().splitlines()
    first = text[0] if text else type(err).__name__
    return first if len(first) <= DETAIL_CHARS else first[: DETAIL_CHARS - 1] + "…"


@contextmanager
def database(what: str) -> Iterator[None]:
    """Around a database write: data the database refuses (too long, out of range, not valid
    text, a constraint) is permanent; a lost connection, a lock timeout or a restart is not."""
    try:
        yield
    except (OperationalError, InterfaceError):
        raise  # transient: retried with backoff
    except (DataError, IntegrityError, ProgrammingError, StatementError) as err:
        raise ApplicationError(
            f"the database refused {what}: {_detail(err)}", type=DATA_REFUSED, non_retryable=True
        ) from err


def render_failed(what: str, err: Exception) -> ApplicationError:
    """A template that cannot render this input: the same input never will."""
    return ApplicationError(
        f"{what} cannot be rendered: {type(err).__name__}: {_detail(err)}",
        type=RENDER_FAILED,
        non_retryable=True,
    )


RENDER_ERRORS = (TemplateError, ValueError, TypeError, KeyError, AttributeError)
