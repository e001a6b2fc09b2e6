"""Email sent as the shared mailbox through Microsoft Graph operated by 21Vianet (EMAIL_BACKEND=
graph): ``POST /v1.0/users/{M365_MAILBOX}/sendMail`` with the message in MIME format, the very
bytes the file outbox writes (activities/senders.py ``mime``), base64 in a ``text/plain`` body.
MIME rather than JSON: Graph's JSON ``internetMessageHeaders`` take only ``X-`` headers, while
a MIME message carries our Message-ID, In-Reply-To and References as they are (sources and what
is not verified: docs/microsoft-365.md).

Graph's answers: 202 accepted; 400 (and any other 4xx the email itself causes) permanent;
401/403 and a refused sign-in are the app's configuration, 404 the mailbox's (M365_MAILBOX):
retried until a person fixes them, as SendGrid's 401/403 are; 408, 429 (its Retry-After kept),
5xx and no answer are transient.
"""

from __future__ import annotations

import base64

from activities.senders import EmailDeliveryError, EmailRejected, OutgoingEmail, message_id_of, mime
from core.graph import GraphClient, GraphError

# not the email's fault: the app's access (401/403), the mailbox (404), time (408, 429, 5xx)
CONFIGURATION = frozenset({401, 403, 404})
TRANSIENT = frozenset({408, 429})


class GraphSender:
    name = "graph"
    idempotent = False  # sendMail has no idempotency key: each call is another email

    def __init__(self, client: GraphClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"GraphSender({self.client!r})"

    def send(self, email: OutgoingEmail) -> str:
        message_id = message_id_of(email)
        body = base64.b64encode(mime(email, message_id))
        try:
            self.client.request(
                "POST",
                self.client.url("/sendMail"),
                f"sendMail of {email.dedup_key}",
                content=body,
                headers={"Content-Type": "text/plain"},
            )
        except GraphError as exc:
            raise _classify(exc) from exc
        # 202 has no body: the message is known by the Message-ID it carries
        return message_id


def _classify(error: GraphError) -> EmailRejected | EmailDeliveryError:
    status = error.status
    if error.signin or status is None or status in CONFIGURATION or status in TRANSIENT:
        return EmailDeliveryError(str(error), error.retry_after)
    if status >= 500:
        return EmailDeliveryError(str(error), error.retry_after)
    return EmailRejected(str(error))
