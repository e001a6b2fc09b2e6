"""A TCP proxy on 127.0.0.1 (a free port) in front of a server, to cut it off on demand.

It runs its own asyncio loop in a daemon thread, so it keeps forwarding while the test's loop (or a
worker's activity thread) is busy. ``cut()`` closes every open connection at once and from then on
closes each new one as soon as it is accepted (the client sees the connection reset, as when the
server's host goes away); ``restore()`` forwards again. ``with TcpProxy(host, port) as proxy:``
stops it, and closes whatever is still open, when the block ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from tests.background import Background

T = TypeVar("T")
CHUNK = 64 * 1024


@dataclass
class ProxyCounts:
    forwarded: int = 0  # connections accepted while forwarding
    refused: int = 0  # connections accepted during a cut and closed at once
    cut: int = 0  # open connections closed by cut()


class TcpProxy(Background):
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.counts = ProxyCounts()
        self._cut = False
        self._open: set[asyncio.StreamWriter] = set()  # both ends of every forwarded connection
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    # -- called from the test's thread
    def start(self) -> Self:
        self._thread.start()
        self._server = self._run(self._listen())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def cut(self) -> int:
        """Close every open connection and refuse new ones; returns how many were closed."""
        return self._run(self._set_cut(True))

    def restore(self) -> None:
        self._run(self._set_cut(False))

    @property
    def is_cut(self) -> bool:
        return self._cut

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # -- on the proxy's loop
    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _set_cut(self, cut: bool) -> int:
        self._cut = cut
        if not cut:
            return 0
        closing = list(self._open)
        self.counts.cut += len(closing) // 2
        for writer in closing:
            writer.transport.abort()  # a reset, not a polite FIN: in-flight queries fail now
        self._open.clear()
        return len(closing) // 2

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        if self._cut:
            self.counts.refused += 1
            client.transport.abort()
            return
        try:
            server_reader, server = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client.transport.abort()
            return
        if self._cut:  # cut while we connected
            self.counts.refused += 1
            client.transport.abort()
            server.transport.abort()
            return
        self.counts.forwarded += 1
        self._open.update((client, server))
        await asyncio.gather(self._pipe(client_reader, server), self._pipe(server_reader, client))
        self._open.discard(client)
        self._open.discard(server)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # one side ended: end the other too (a cut has aborted both already)
            with suppress(Exception):
                writer.transport.abort()
