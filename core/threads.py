"""Email threads: every email of a case or of an unpaid invoice belongs to its workflow's thread.

A thread is named by a token, a MAC of the workflow id under ``EMAIL_THREAD_SECRET``: nobody without
the secret can make the token of another thread. The token is in each email's ``Message-ID``, in
the thread's root id that every email names in ``In-Reply-To`` and ``References`` (as GitHub's
notifications do: no email needs to know which one went first, and a mail client groups them all),
and in the per-thread ``Reply-To`` address. A reply carries the token back in its recipient or its
``In-Reply-To``/``References``; ``email_thread`` maps the token to the workflow.

The setting holds ``old,new`` while the secret is rotated: tokens are made with the last, and a
reply's token is verified against each, so a reply to an email sent before the rotation still
reaches its workflow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import SecretStr

MAILBOX = "billing-support"
TOKEN_CHARS = 20  # 100 bits of MAC in lower-case base 32: mail systems may lower-case a local part
TOKEN = re.compile(rf"[a-z2-7]{{{TOKEN_CHARS}}}")
# where a token sits: billing-support+<token>@, <thread.<token>@, <...-<token>@
_TOKEN_IN = re.compile(rf"(?:\+|<thread\.|\.)([a-z2-7]{{{TOKEN_CHARS}}})@", re.IGNORECASE)


def thread_token(workflow_id: str, secret: SecretStr | None) -> str:
    """The thread's token. Without a secret (no inbound address, local runs) it still threads the
    emails, but it is not signed and routes nothing (see ``ThreadHeaders.reply_to``)."""
    key = secret.get_secret_value().encode() if secret is not None else b""
    mac = hmac.new(key, workflow_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b32encode(mac).decode("ascii").lower()[:TOKEN_CHARS]


def tokens_in(*values: str) -> list[str]:
    """The thread tokens found in addresses and message ids, in order, each once."""
    found: list[str] = []
    for value in values:
        for match in _TOKEN_IN.finditer(value or ""):
            token = match.group(1).lower()
            if token not in found:
                found.append(token)
    return found


@dataclass(frozen=True)
class ThreadHeaders:
    """The threading headers of one email."""

    token: str
    message_id: str
    in_reply_to: str
    references: str
    reply_to: str | None


def thread_headers(
    workflow_id: str,
    dedup_key: str,
    domain: str,
    secret: SecretStr | None,
    inbound_domain: str | None,
) -> ThreadHeaders:
    """``domain``: our From address's domain; ``inbound_domain``: where Inbound Parse receives
    replies (no ``Reply-To`` without it: replies then go to the From address)."""
    token = thread_token(workflow_id, secret)
    digest = hashlib.sha256(dedup_key.encode("utf-8")).hexdigest()[:24]
    root = f"<thread.{token}@{domain}>"
    reply_to = (
        f"{MAILBOX}+{token}@{inbound_domain}" if inbound_domain and secret is not None else None
    )
    return ThreadHeaders(
        token=token,
        # the same key gives the same id: a resent email is the same message
        message_id=f"<{digest}.{token}@{domain}>",
        in_reply_to=root,
        references=root,
        reply_to=reply_to,
    )


def verified(token: str, workflow_id: str, secrets: Sequence[SecretStr]) -> bool:
    """Whether ``token`` is the thread token of ``workflow_id`` under one of ``secrets``. Never
    without a secret: the unsigned token of a thread is anyone's to make."""
    matches = [  # every secret is tried: the time taken says nothing of which one
        hmac.compare_digest(token, thread_token(workflow_id, secret)) for secret in secrets
    ]
    return any(matches)


@dataclass(frozen=True)
class EmailThreads:
    """The settings threads are made with (``Settings.email_threads``): the email activity makes
    each email's headers with the newest secret, inbound mail verifies a token against all."""

    secrets: tuple[SecretStr, ...] = ()  # oldest first: the last one makes the tokens
    inbound_domain: str | None = None

    def headers(self, workflow_id: str, dedup_key: str, domain: str) -> ThreadHeaders:
        current = self.secrets[-1] if self.secrets else None
        return thread_headers(workflow_id, dedup_key, domain, current, self.inbound_domain)

    def verified(self, token: str, workflow_id: str) -> bool:
        return verified(token, workflow_id, self.secrets)
