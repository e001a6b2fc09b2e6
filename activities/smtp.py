"""Emails out through the partner's own mail server over SMTP (Tencent Exmail, Alibaba Mail,
NetEase, Microsoft 365 operated by 21Vianet, a local relay), with the standard library's smtplib.

The bytes sent are the outbox's (`senders.mime`): the same Message-ID and thread headers. SMTP has
no idempotency key, so the email log gives at most once (activities/email.py). Two windows are left
for a duplicate: the worker dies between the server's 250 and the heartbeat that carries it to the
next attempt (as with SendGrid), or the server takes the message and the connection drops before
its 250 reaches us. That drop cannot be told from a server that lost the message, so the attempt
fails as transient and the retry sends again: the customer may get it twice, never not at all.

One connection per email: a reused one goes stale between sends (servers close idle connections
after a minute or so) and a failure in the middle of a transaction leaves it in a state we would
have to repair; a fresh one makes each attempt's outcome plain. The cost, a TLS handshake per
email, is small beside the providers' per-minute limits.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress

from activities.senders import (
    EmailDeliveryError,
    EmailRejected,
    OutgoingEmail,
    message_id_of,
    mime,
)
from core.azure_ad import TokenError
from core.settings import SmtpAuth, SmtpSecurity

DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "tls": 465, "none": 25}
# the longest an email waits for the rate limit before its attempt fails, to be retried later:
# with the conversation's own bound (SMTP_TIMEOUT_SECONDS, at most 30 s) an attempt stays within
# the activity's 60 s, so a slow send is never still running when a retry takes its claim
MAX_RATE_WAIT_SECONDS = 20.0
# a permanent-looking reply that is about how much we send, not this email: transient (the
# providers' own words for their limits vary; "421/451/452 too many" are transient by code anyway)
_SENDING_TOO_MUCH = re.compile(r"too many|frequen|rate.?limit|send(?:ing)? (?:limit|quota)", re.I)


class SendingRate:
    """At most `per_minute` sends in any 60 s, for every thread of the process that shares it.

    A send that would exceed it waits for its turn; a turn further away than `max_wait` is not
    taken (EmailDeliveryError: the activity is retried later, with backoff)."""

    def __init__(
        self,
        per_minute: int,
        max_wait: float = MAX_RATE_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute: at least 1")
        self.per_minute = per_minute
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._turns: deque[float] = deque()  # the times of the last minute's sends (and booked)

    def wait_turn(self) -> None:
        with self._lock:
            now = self._clock()
            while self._turns and self._turns[0] <= now - 60:
                self._turns.popleft()
            turn = now
            if len(self._turns) >= self.per_minute:
                turn = max(now, self._turns[-self.per_minute] + 60)
            if turn - now > self.max_wait:
                raise EmailDeliveryError(
                    f"SMTP_MAX_PER_MINUTE={self.per_minute}: the next turn to send is in "
                    f"{turn - now:.0f} s; try later"
                )
            self._turns.append(turn)  # booked under the lock: waiting threads get distinct turns
        if turn > now:
            self._sleep(turn - now)


class SmtpSender:
    """One email per SMTP conversation, bounded as a whole by `timeout` seconds."""

    name = "smtp"
    idempotent = False  # SMTP has no idempotency key: each conversation is a new email

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: SmtpSecurity = "starttls",
        auth: SmtpAuth = "login",
        username: str = "",
        password: str = "",
        token: Callable[[], str] | None = None,
        envelope_from: str | None = None,
        timeout: float = 30.0,
        rate: SendingRate | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if auth == "xoauth2" and token is None:
            raise ValueError("auth xoauth2 needs a token provider")
        self.host = host
        self.port = port or DEFAULT_PORTS[security]
        self.security = security
        self.auth = auth
        self.username = username
        self._password = password
        self._token = token
        self.envelope_from = envelope_from
        self.timeout = timeout
        self.rate = rate
        self.tls_context = tls_context or ssl.create_default_context()  # the system's CAs

    def __repr__(self) -> str:
        return f"SmtpSender({self.host}:{self.port}, {self.security}, auth={self.auth})"

    def send(self, email: OutgoingEmail) -> str:
        message_id = message_id_of(email)
        message = mime(email, message_id)
        sender = self.envelope_from or email.from_address
        # a non-ASCII mailbox name needs the server's SMTPUTF8 (RFC 6531)
        options = [] if (sender + email.to).isascii() else ["SMTPUTF8"]
        if self.rate is not None:
            self.rate.wait_turn()
        where = f"SMTP {self.host}:{self.port}"
        conversation = _Conversation(self)
        try:
            with conversation as conn:
                if options and not conn.has_extn("smtputf8"):
                    raise EmailRejected(f"{where} takes no non-ASCII address (no SMTPUTF8)")
                conn.sendmail(sender, [email.to], message, mail_options=options)
                # the 250 after DATA was the server's word: the email is its now
                with suppress(smtplib.SMTPException, OSError):
                    conn.quit()
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (0, b""))
            raise _classify(where, "recipient", code, reply, permanent=True) from exc
        except smtplib.SMTPSenderRefused as exc:
            # the envelope is the same for every email (our configuration: retry once it is
            # fixed), but for its SIZE: a message too big for the server is this email's
            too_big = exc.smtp_code == 552 or b"5.3.4" in exc.smtp_error
            raise _classify(
                where, f"sender {exc.sender}", exc.smtp_code, exc.smtp_error, permanent=too_big
            ) from exc
        except smtplib.SMTPDataError as exc:
            raise _classify(
                where, "message", exc.smtp_code, exc.smtp_error, permanent=True
            ) from exc
        except TokenError as exc:
            # the Microsoft 365 app's token (XOAUTH2): a refused app is our configuration
            raise EmailDeliveryError(f"{where}: no XOAUTH2 token: {exc}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            # a wrong password or token is our configuration, not this email: retry once fixed
            raise _classify(where, "login", exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPResponseException as exc:
            raise _classify(where, "connection", exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # refused, reset, timed out, closed (also after DATA: see the module's docstring)
            late = f" (cut after {self.timeout:.0f} s)" if conversation.expired.is_set() else ""
            raise EmailDeliveryError(f"{where}: {type(exc).__name__}: {exc}{late}") from exc
        return message_id

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self.tls_context
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _greet(self, conn: smtplib.SMTP) -> None:
        """EHLO, STARTTLS where asked (never on in clear instead), then sign in."""
        conn.ehlo()
        if self.security == "starttls":
            if not conn.has_extn("starttls"):
                raise EmailDeliveryError(f"SMTP {self.host}:{self.port} does not offer STARTTLS")
            conn.starttls(context=self.tls_context)
            conn.ehlo()
        if self.auth == "login":
            conn.login(self.username, self._password)
        elif self.auth == "xoauth2":
            conn.auth("XOAUTH2", self._xoauth2, initial_response_ok=True)

    def _xoauth2(self, challenge: bytes | None = None) -> str:
        """SASL XOAUTH2's initial response; to a challenge (the server's error, in JSON) the
        empty answer that ends the exchange with its 535."""
        if challenge is not None:
            return ""
        assert self._token is not None
        return f"user={self.username}\x01auth=Bearer {self._token()}\x01\x01"


class _Conversation:
    """A connection, secured and signed in, closed on leaving. Once the sender's `timeout` has
    passed since it began its socket is shut, whatever step it is in (smtplib's timeout bounds
    each read or write: a server answering slowly, line by line, could hold it for ever). Only
    the connection's own set-up (connect, the TLS handshake) is not cut short: each of its steps
    is bounded by the timeout."""

    def __init__(self, sender: SmtpSender) -> None:
        self._sender = sender
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()
        self.expired = threading.Event()
        self._timer = threading.Timer(sender.timeout, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> smtplib.SMTP:
        self._timer.start()
        try:
            conn = self._sender._connect()
            with self._lock:
                self._conn = conn
            if self.expired.is_set():
                self._expire()
            self._sender._greet(conn)
        except BaseException:
            self._leave()
            raise
        return conn

    def __exit__(self, *_: object) -> None:
        self._leave()

    def _leave(self) -> None:
        self._timer.cancel()
        if self._conn is not None:
            self._conn.close()

    def _expire(self) -> None:
        with self._lock:
            self.expired.set()
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            # the plain socket's shutdown: it wakes a read blocked in another thread (an SSL
            # socket's own would also drop its TLS state under that read)
            with suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _classify(
    where: str, step: str, code: int, reply: bytes | str, *, permanent: bool = False
) -> EmailRejected | EmailDeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    message = f"{where} refused the {step}: {code} {text}"
    if permanent and 500 <= code < 600 and not _SENDING_TOO_MUCH.search(text):
        return EmailRejected(message)
    return EmailDeliveryError(message)
