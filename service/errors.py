"""The service layer's typed errors: every adapter (CLI, API, workspace) maps these, and only these,
to its own answers. Each message is written for the person who acted and names what went wrong."""

from __future__ import annotations


class ServiceError(Exception):
    """An action could not be carried out; the message says why."""


class NotFound(ServiceError):
    """No such case, invoice in collections or 21Vianet invoice."""


class Refused(ServiceError):
    """The workflow refused the action (its validator's message) and nothing changed."""


class Ended(ServiceError):
    """The workflow has ended: it takes no more actions."""


class AlreadyExists(ServiceError):
    """Something with that id exists already (a case id, a recorded 21Vianet invoice)."""


class Unavailable(ServiceError):
    """Temporal or the database cannot be reached or did not answer in time: nothing is known to
    have changed, and the same call may be made again."""


class Throttled(ServiceError):
    """Too many attempts at once or in a row: nothing was tried; try again in `retry_after`
    seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts: try again in {retry_after} s")
        self.retry_after = retry_after


# the HTTP answer of each, for the adapters that speak HTTP (the intake API, the workspace)
HTTP_STATUS: dict[type[ServiceError], int] = {
    NotFound: 404,
    Refused: 409,
    AlreadyExists: 409,
    Ended: 410,
    Unavailable: 503,
    Throttled: 429,
}
