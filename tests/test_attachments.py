"""Inbound attachments: kept once by content outside Temporal, limited, and named safely."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from intake.attachments import AttachmentStore, safe_name


def store(tmp_path: Path, max_bytes: int = 1024) -> AttachmentStore:
    return AttachmentStore(tmp_path / "attachments", max_bytes, ["application/pdf"])


def test_the_same_bytes_are_kept_once_under_their_digest(tmp_path: Path) -> None:
    kept = store(tmp_path).keep("发票.pdf", "application/pdf", b"%PDF-1.4")
    again = store(tmp_path).keep("copy.pdf", "APPLICATION/PDF", b"%PDF-1.4")

    digest = hashlib.sha256(b"%PDF-1.4").hexdigest()
    assert (kept.name, kept.size, kept.sha256, kept.refused) == ("发票.pdf", 8, digest, "")
    path = store(tmp_path).path_for(digest)
    assert path.read_bytes() == b"%PDF-1.4" and again.sha256 == digest
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(list((tmp_path / "attachments").rglob("*"))) == 2  # one folder, one file
    assert kept.line() == f"发票.pdf (8 bytes, sha256 {digest})"


def test_too_large_or_of_another_type_is_listed_not_kept(tmp_path: Path) -> None:
    large = store(tmp_path, max_bytes=4).keep("a.pdf", "application/pdf", b"12345")
    script = store(tmp_path).keep("run.exe", "application/x-msdownload", b"MZ")
    assert large.refused == "over 4 bytes" and "not taken" in script.refused
    assert "not kept" in script.line()
    assert not (tmp_path / "attachments").exists()


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\a\\发票.pdf", "发票.pdf"),
        ("a\x00b\r\nc.pdf", "abc.pdf"),
        ("evil\u202egpj.exe", "evilgpj.exe"),
        ('x<>:"|?*.pdf', "x_.pdf"),
        ("...", "attachment"),
        ("", "attachment"),
        ("长" * 300 + ".pdf", "长" * 96 + ".pdf"),  # 100 characters
    ],
)
def test_names_are_sanitized(given: str, shown: str) -> None:
    assert safe_name(given) == shown
