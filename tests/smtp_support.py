"""A real SMTP server (aiosmtpd) on 127.0.0.1 for the SMTP sender's tests, with trouble on demand.

- ``refuse(address, reply)``: RCPT TO that address is answered ``reply`` (``550 5.1.1 …``);
- ``after_data(*answers)``: the next messages' DATA is answered in turn with each answer: a reply
  (``451 4.7.1 …``, ``554 …``), ``DROP_LOST`` (the connection is closed, the message not kept: a
  server that crashed) or ``DROP_KEPT`` (the message is kept, then the connection closed before the
  250: the accept-then-crash window); then every message is accepted;
- ``security``: ``none``, ``starttls`` (the certificate of ``SelfSignedCertificate``) or ``tls``;
- ``auth``: ``login`` (AUTH LOGIN only, ``USER`` and ``PASSWORD``) or ``xoauth2`` (AUTH XOAUTH2,
  ``USER`` and the bearer ``TOKEN``; a wrong one gets the JSON challenge, then 535).

Every kept message is in ``received`` with its envelope and its bytes as they arrived.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chaos.harness import free_port

HOST = "127.0.0.1"
USER = "billing-support@partner.example.cn"
PASSWORD = "app-password-1a2b"  # Exmail's and NetEase's 客户端专用密码 / 授权码
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-token"
DROP_LOST = "drop, message lost"
DROP_KEPT = "drop, message kept"
ACCEPTED = "250 2.0.0 Ok: queued"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    smtputf8: bool


class SelfSignedCertificate:
    """A self-signed certificate for 127.0.0.1 made for the run: the server's context, and a
    client's that trusts it (and nothing else)."""

    def __init__(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.test.example")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))

    def server_context(self, directory: Path) -> ssl.SSLContext:
        cert, key = directory / "cert.pem", directory / "key.pem"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context


class MailServer:
    """aiosmtpd's handler: what the server answers, and what it kept."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refused: dict[str, str] = {}
        self.answers: deque[str] = deque()
        self.data_commands = 0  # messages whose DATA came in, kept or not
        self.logins: list[str] = []
        self.pause = 0.0  # seconds before each answer to MAIL, RCPT and DATA
        self.token_valid: Callable[[str], bool] = lambda token: token == TOKEN
        self._lock = threading.Lock()

    def refuse(self, address: str, reply: str) -> None:
        self.refused[address] = reply

    def after_data(self, *answers: str) -> None:
        self.answers.extend(answers)

    def keys(self, header: str = "X-Dedup-Key") -> list[str]:
        from email import message_from_bytes

        return [str(message_from_bytes(r.content)[header]) for r in self.received]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.pause)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await asyncio.sleep(self.pause)
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.pause)
        with self._lock:
            self.data_commands += 1
            answer = self.answers.popleft() if self.answers else ACCEPTED
        if answer in (ACCEPTED, DROP_KEPT):
            assert isinstance(envelope.content, bytes) and envelope.mail_from is not None
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.content,
                    "SMTPUTF8" in envelope.mail_options,
                )
            )
        if answer in (DROP_LOST, DROP_KEPT):
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()  # no reply: the client's read ends with the connection
        return answer

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2 as Microsoft 365 and Gmail answer it (the initial response only)."""
        if len(args) != 2:
            return AuthResult(
                success=False, handled=False, message="501 5.5.2 initial response expected"
            )
        fields = base64.b64decode(args[1]).decode().split("\x01")
        user = fields[0].removeprefix("user=")
        if user != USER:
            return AuthResult(success=False, handled=False, message="535 5.7.3 unknown user")
        scheme, _, bearer = fields[1].partition(" ") if len(fields) == 4 else ("", "", "")
        if (scheme, fields[2:]) == ("auth=Bearer", ["", ""]) and self.token_valid(bearer):
            self.logins.append(f"XOAUTH2 {user}")
            return AuthResult(success=True, auth_data=user)
        error = json.dumps({"status": "401", "schemes": "bearer"})
        await server.challenge_auth(error)  # the client answers with an empty line
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    def authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        if (data.login.decode(), data.password.decode()) == (USER, PASSWORD):
            self.logins.append(f"{mechanism} {USER}")
            return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)


class SmtpServer:
    """A running aiosmtpd server with the `MailServer` handler; stop() ends it."""

    def __init__(
        self,
        certificate: SelfSignedCertificate | None,
        directory: Path,
        *,
        security: str = "none",
        auth: str = "none",
    ) -> None:
        self.mail = MailServer()
        self.port = free_port()
        self.security = security
        # implicit TLS is TLS from the start (aiosmtpd counts only STARTTLS as TLS for AUTH)
        kwargs: dict[str, Any] = {"auth_require_tls": security == "starttls"}
        if security != "none":
            assert certificate is not None
            context = certificate.server_context(directory)
            kwargs["tls_context" if security == "starttls" else "ssl_context"] = context
            if security == "starttls":
                kwargs["require_starttls"] = True
        if auth == "login":
            # LOGIN only (smtplib would otherwise choose PLAIN), and no XOAUTH2 of the handler
            kwargs |= {"authenticator": self.mail.authenticator, "auth_required": True}
            kwargs["auth_exclude_mechanism"] = ["PLAIN", "XOAUTH2"]
        elif auth == "xoauth2":
            kwargs |= {"auth_required": True, "auth_exclude_mechanism": ["PLAIN", "LOGIN"]}
        else:
            kwargs["auth_exclude_mechanism"] = ["PLAIN", "LOGIN", "XOAUTH2"]
        ssl_context = kwargs.pop("ssl_context", None)
        self._controller = Controller(
            self.mail,
            hostname=HOST,
            port=self.port,
            ssl_context=ssl_context,
            server_hostname=HOST,
            enable_SMTPUTF8=True,
            **kwargs,
        )
        self._controller.start()
        self._stopped = False

    def stop(self) -> None:
        if not self._stopped:  # a test may have stopped it already
            self._controller.stop()
            self._stopped = True


@pytest.fixture(scope="session", name="certificate")
def certificate_fixture() -> SelfSignedCertificate:
    return SelfSignedCertificate()


@pytest.fixture(name="smtp_server")
def smtp_server_fixture(
    tmp_path: Path, certificate: SelfSignedCertificate
) -> Iterator[Callable[..., SmtpServer]]:
    """Starts a server (`smtp_server(security=..., auth=...)`); each stops when the test ends."""
    servers: list[SmtpServer] = []

    def start(*, security: str = "none", auth: str = "none") -> SmtpServer:
        servers.append(SmtpServer(certificate, tmp_path, security=security, auth=auth))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
