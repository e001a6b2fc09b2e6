"""A private Postfix (Debian's `postfix`) on 127.0.0.1 for the SMTP sender's tests: its own
configuration, queue and mail directories under the test's folder, STARTTLS with the run's
`SelfSignedCertificate`, every address of `DOMAIN` delivered to one maildir, `REFUSED` answered 550.

Postfix's master starts as root (it drops to the `postfix` user): the fixture skips, saying why,
without the package or as another user. `.ci/run` installs the package.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.harness import free_port
from tests.smtp_support import HOST, SelfSignedCertificate

POSTFIX = "/usr/sbin/postfix"
DOMAIN = "customer.example.cn"
REFUSED = f"nobody@{DOMAIN}"
# the services a Postfix that listens on one port and delivers to maildirs needs
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
tlsmgr unix - - n 1000? 1 tlsmgr
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """A started private instance; `delivered()` reads its maildir, `stop()` ends it."""

    def __init__(self, directory: Path, certificate: SelfSignedCertificate) -> None:
        self.port = free_port()
        self.directory = directory
        self.conf = directory / "conf"
        self.mail = directory / "mail"
        for sub in ("conf", "queue", "data", "mail"):
            (directory / sub).mkdir(parents=True)
        user = pwd.getpwnam("postfix")
        for owned in (directory / "data", self.mail):
            os.chown(owned, user.pw_uid, user.pw_gid)
        (self.conf / "cert.pem").write_bytes(certificate.cert_pem)
        (self.conf / "key.pem").write_bytes(certificate.key_pem)
        (self.conf / "key.pem").chmod(0o600)
        refuse = f"inline:{{ {{{REFUSED}=550 5.1.1 no such mailbox here}} }}"
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": directory / "queue",
            "data_directory": directory / "data",
            "meta_directory": "/etc/postfix",
            "maillog_file": directory / "maillog",
            "maillog_file_prefixes": directory,
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            "myhostname": "mx.customer.example.cn",
            "mydestination": "",
            "alias_maps": "",
            "mynetworks": "127.0.0.0/8",
            "smtputf8_enable": "yes",
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": self.conf / "cert.pem",
            "smtpd_tls_key_file": self.conf / "key.pem",
            "smtpd_tls_received_header": "yes",  # "(using TLSv1.3 with cipher …)"
            "smtpd_recipient_restrictions": f"check_recipient_access {refuse}, "
            "permit_mynetworks, reject",
            "virtual_mailbox_domains": DOMAIN,
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": "static:inbox/",
            "virtual_uid_maps": f"static:{user.pw_uid}",
            "virtual_gid_maps": f"static:{user.pw_gid}",
            "virtual_minimum_uid": str(min(user.pw_uid, 100)),
        }
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
        (self.conf / "master.cf").write_text(MASTER_CF.format(listen=f"{HOST}:{self.port}"))
        self._postfix("start")

    def _postfix(self, command: str) -> None:
        done = subprocess.run(
            [POSTFIX, "-c", str(self.conf), command], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            log = self.directory / "maillog"
            tail = log.read_text()[-2000:] if log.exists() else done.stderr
            raise RuntimeError(f"postfix {command} failed ({done.returncode}): {tail}")

    def delivered(self) -> list[bytes]:
        """The messages delivered so far, as Postfix wrote them (its trace headers first)."""
        return [path.read_bytes() for path in sorted((self.mail / "inbox" / "new").glob("*"))]

    def log(self) -> str:
        return (self.directory / "maillog").read_text(errors="replace")

    def stop(self) -> None:
        self._postfix("stop")


def postfix_missing() -> str | None:
    if shutil.which(POSTFIX) is None:
        return "Debian's postfix is not installed (.ci/run installs it)"
    if os.geteuid() != 0:
        return "a private Postfix's master starts as root only"
    return None


@pytest.fixture(scope="module", name="postfix")
def postfix_fixture(certificate: SelfSignedCertificate) -> Iterator[Postfix]:
    if (missing := postfix_missing()) is not None:
        pytest.skip(missing)
    # not under pytest's folders: they are the owner's only, and Postfix's processes run as
    # the `postfix` user
    directory = Path(tempfile.mkdtemp(prefix="postfix-"))
    directory.chmod(0o755)
    try:
        server = Postfix(directory, certificate)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
