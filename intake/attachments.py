"""Attachments of inbound email, kept outside Temporal: a content-addressed store (a file named by
its sha256 under ``ATTACHMENTS_DIR``), with a size and a type limit and a name safe to show.
Workflows only ever see the name, the size and the digest."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from core.files import content_path, write_atomically

NAME_CHARS = 100
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


@dataclass(frozen=True)
class Stored:
    name: str  # sanitized
    size: int
    sha256: str
    refused: str = ""  # why it was not kept (too large, a type we do not take)

    def line(self) -> str:
        kept = f"sha256 {self.sha256}" if not self.refused else f"not kept: {self.refused}"
        return f"{self.name} ({self.size:,} bytes, {kept})"


def safe_name(name: str) -> str:
    """The sender's file name as a person may see it: no path, no control characters, bounded."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    name = _UNSAFE.sub("_", name).strip(" .")
    if len(name) > NAME_CHARS:
        _, dot, suffix = name.rpartition(".")
        keep = suffix[:10] if dot and len(suffix) <= 10 else ""
        name = name[: NAME_CHARS - len(keep) - 1] + ("." + keep if keep else "")
    return name or "attachment"


class AttachmentStore:
    def __init__(self, root: Path, max_bytes: int, types: list[str]) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.types = {t.lower() for t in types}

    def path_for(self, sha256: str) -> Path:
        return content_path(self.root, sha256)

    def keep(self, name: str, content_type: str, data: bytes) -> Stored:
        """Store ``data`` once (the same bytes again are the same file); what was kept."""
        shown = safe_name(name)
        digest = hashlib.sha256(data).hexdigest()
        if len(data) > self.max_bytes:
            return Stored(shown, len(data), digest, f"over {self.max_bytes:,} bytes")
        if content_type.lower() not in self.types:
            return Stored(shown, len(data), digest, f"type {content_type[:80]} is not taken")
        path = self.path_for(digest)
        if not path.exists():  # the same bytes are the same file
            write_atomically(path, data)
        return Stored(shown, len(data), digest)
