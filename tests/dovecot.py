"""A private Dovecot IMAP server for the IMAP mailbox tests and bench scenario 6: Debian's
`dovecot-imapd` (`.ci/run` installs it), on 127.0.0.1 at free ports, with its own directory
(configuration, sockets, state, log, maildirs), an account for any user name (one password), and a
self-signed certificate for IMAPS (and STARTTLS on the plain port). ``with Dovecot(...) as server``
stops it, and removes its directory, when the block ends; xdist workers each start their own.

As root, Dovecot will not run its login processes or mail as root: they run as the package's
`dovenull` and `dovecot` users, who own the maildirs; otherwise everything runs as the caller.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import grp
import imaplib
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT = Path("/usr/sbin/dovecot")
MISSING = "dovecot-imapd is not installed (.ci/run installs it): the IMAP tests need a real server"
START_SECONDS = 30.0
CONFIG = """\
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = dovecot-test-{name}
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{dir}/cert.pem
ssl_key = <{dir}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = 1
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:{dir}/mail/%u
{capabilities}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={dir}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Dovecot:
    """``capabilities``: what the server says it offers, when not all (e.g. "IMAP4rev1", to
    try a client's fallbacks for MOVE, UIDPLUS and IDLE)."""

    def __init__(self, capabilities: str | None = None) -> None:
        self.capabilities = capabilities
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.port, self.tls_port = 0, 0
        self.cert = self.dir / "cert.pem"
        self.password = uuid.uuid4().hex
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        try:
            self._prepare()
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ssl_context(self) -> ssl.SSLContext:
        """A client's context that trusts this server's certificate (for 127.0.0.1)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def account(self) -> tuple[str, str]:
        """A new mailbox of its own: (user, password). Every user name signs in with the
        server's one password, each to a maildir of its own."""
        return f"billing-{uuid.uuid4().hex[:10]}", self.password

    # ------------------------------------------------------------------ the process

    def start(self) -> None:
        """Start it (again, after stop(): the same ports, the same mail)."""
        for _ in range(5):  # another process may take a free port before Dovecot binds it
            if not self.port:
                self.port, self.tls_port = free_port(), free_port()
                self._configure()
            self._process = subprocess.Popen(
                [str(DOVECOT), "-F", "-c", str(self.dir / "dovecot.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the tests alone
            )
            if self._ready():
                return
            self.stop()
            self.port = 0
        raise RuntimeError(f"dovecot did not start:\n{self.log()}")

    def stop(self) -> None:
        """Stop it, and every process it started: the connections it serves end with it, as
        when its host restarts (its master alone gone, they would live on for a while)."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # its own session: the group is its own
        try:
            process.wait(timeout=15)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log(self) -> str:
        path = self.dir / "dovecot.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def _ready(self) -> bool:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn,
            ):
                if conn.recv(64).startswith(b"* OK"):
                    return True
            time.sleep(0.1)
        return False

    def _prepare(self) -> None:
        if not DOVECOT.exists():
            raise RuntimeError(MISSING)
        self.dir.chmod(0o755)  # the login processes find their sockets under it
        for name in ("run", "state", "mail"):
            (self.dir / name).mkdir()
        if os.getuid() == 0:
            os.chown(self.dir / "mail", pwd.getpwnam("dovecot").pw_uid, -1)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (self.dir / "key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def _configure(self) -> None:
        if os.getuid() == 0:
            internal, internal_group, login = "dovecot", "dovecot", "dovenull"
            mail_uid, mail_gid = "dovecot", "dovecot"
        else:
            internal = login = mail_uid = getpass.getuser()
            internal_group = mail_gid = grp.getgrgid(os.getgid()).gr_name
        capabilities = f"imap_capability = {self.capabilities}" if self.capabilities else ""
        (self.dir / "dovecot.conf").write_text(
            CONFIG.format(
                dir=self.dir,
                name=self.dir.name,
                internal=internal,
                internal_group=internal_group,
                login=login,
                mail_uid=mail_uid,
                mail_gid=mail_gid,
                capabilities=capabilities,
                port=self.port,
                tls_port=self.tls_port,
                password=self.password,
            )
        )

    # ------------------------------------------------------------------ a client, as a person's

    def client(self, user: str, password: str) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        imap.login(user, password)
        return imap

    def append(self, user: str, password: str, raw: bytes, folder: str = "INBOX") -> None:
        """A message put into the folder, as a mail server delivers it."""
        imap = self.client(user, password)
        try:
            answer, said = imap.append(folder, None, None, raw)
            if answer != "OK":
                raise RuntimeError(f"APPEND {folder}: {said}")
        finally:
            imap.logout()

    def messages(self, user: str, password: str, folder: str = "INBOX") -> list[tuple[bytes, str]]:
        """(the message, its flags) of each message in the folder, oldest first; none
        where the folder is not there."""
        imap = self.client(user, password)
        try:
            if imap.select(folder, readonly=True)[0] != "OK":
                return []
            _, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            found = []
            for item in data:
                if isinstance(item, tuple):
                    flags = imaplib.ParseFlags(item[0])
                    found.append((item[1], " ".join(f.decode() for f in flags)))
            return found
        finally:
            imap.logout()
