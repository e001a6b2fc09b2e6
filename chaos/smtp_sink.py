"""The SMTP server of `make chaos --smtp`: aiosmtpd on 127.0.0.1, taking every message and
writing its Message-ID and X-Dedup-Key as a JSON line to a record file, on disk (fsync) before
its 250. The harness SIGKILLs it and starts it again mid-run, as a mail server that crashed.

    python -m chaos.smtp_sink --port 2525 --record received.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO

from aiosmtpd.smtp import SMTP, Envelope, Session

from chaos.harness import HOST, ChildProcess
from core.settings import Settings


class Recorder:
    """aiosmtpd's handler: each message's ids appended to the record, durably, before the 250."""

    def __init__(self, record: IO[str]) -> None:
        self._record = record

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        headers = BytesHeaderParser().parsebytes(envelope.content)
        line = {"message_id": headers["Message-ID"], "dedup_key": headers["X-Dedup-Key"]}
        self._record.write(json.dumps(line) + "\n")
        self._record.flush()
        os.fsync(self._record.fileno())
        return "250 2.0.0 Ok: recorded"


async def serve(port: int, record: Path) -> None:
    with record.open("a", encoding="utf-8") as out:
        recorder = Recorder(out)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(recorder, enable_SMTPUTF8=True), HOST, port)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()


def received(record: Path) -> list[str]:
    """The dedup keys of every message the sink took, across its restarts (a line cut by a
    SIGKILL is a message it never answered 250)."""
    if not record.exists():
        return []
    keys = []
    for line in record.read_text(encoding="utf-8").splitlines():
        try:
            keys.append(str(json.loads(line)["dedup_key"]))
        except (ValueError, KeyError):
            continue
    return keys


class SinkProcess(ChildProcess):
    """`python -m chaos.smtp_sink` on 127.0.0.1:`port`, recording to `record`."""

    def __init__(self, settings: Settings, address: str, log: Path, port: int) -> None:
        super().__init__(settings, address, log)
        self.port = port
        self.record = log.with_suffix(".jsonl")

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "chaos.smtp_sink",
            f"--port={self.port}",
            f"--record={self.record}",
        ]

    def wait_ready(self) -> None:
        self.wait_listening(self.port, "SMTP sink")

    def worker_env(self) -> dict[str, str]:
        """What a worker sends through it with."""
        return {
            "EMAIL_BACKEND": "smtp",
            "SMTP_HOST": HOST,
            "SMTP_PORT": str(self.port),
            "SMTP_SECURITY": "none",  # a relay on this host
            "SMTP_AUTH": "none",
        }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.smtp_sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
