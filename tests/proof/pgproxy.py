"""A loopback TCP proxy the store-fault scenario puts between the daemon and PostgreSQL.

``cut()`` closes every open connection and stops listening, so new ones are refused: to the
daemon, the database server went away. ``restore()`` listens again on the same port.
``lose_the_answer_to(marker)`` lets the next message carrying ``marker`` reach the server and
resets the connection when the answer comes back: the statement ran, and the client never
learns it. The machine's shared PostgreSQL server, which other tests use, is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class TcpProxy:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target_host, self.target_port = target_host, target_port
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._marker: bytes | None = None
        self.answers_lost = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        self.cuts += 1
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()  # RST, not a polite close: the server is gone
        self._pipes.clear()

    def lose_the_answer_to(self, marker: bytes) -> None:
        self._marker = marker

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))
        sent_marked = asyncio.Event()  # this connection carried the marked message
        await asyncio.gather(
            self._pump(reader, up_writer, self._watch(sent_marked)),
            self._pump(up_reader, writer, self._drop_after(sent_marked, writer, up_writer)),
            return_exceptions=True,
        )
        for side in (writer, up_writer):
            self._pipes.discard(side)
            side.transport.abort()

    def _watch(self, sent_marked: asyncio.Event) -> Callable[[bytes], bool]:
        def forward(chunk: bytes) -> bool:
            if self._marker is not None and self._marker in chunk:
                self._marker = None
                sent_marked.set()
            return True

        return forward

    def _drop_after(
        self, sent_marked: asyncio.Event, *sides: asyncio.StreamWriter
    ) -> Callable[[bytes], bool]:
        def forward(chunk: bytes) -> bool:
            if not sent_marked.is_set():
                return True
            self.answers_lost += 1
            for side in sides:
                side.transport.abort()
            return False

        return forward

    @staticmethod
    async def _pump(
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        forward: Callable[[bytes], bool],
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await source.read(65536):
                if not forward(chunk):
                    return
                sink.write(chunk)
                await sink.drain()
        sink.close()  # one side ended: end the other, as the server's own socket would
