"""stdin and stdout as asyncio pipes, for the stdio transport.

The SDK's own stdio transport reads and writes through anyio's file wrapper, which runs every
``readline``, ``write`` and ``flush`` on a worker thread: three thread hops per message, about
half a millisecond of a ping's round trip here (BENCHMARKS.md). When both ends are pipes or
sockets, as they are under an MCP client, the event loop can watch them itself: that is what
this module gives, in the shape the SDK's ``stdio_server(stdin, stdout)`` accepts (an async
iterator of text lines, and an object with async ``write`` and ``flush``).

While serving, fd 0 reads the null device and fd 1 writes to stderr, so that nothing else in
the process (a library's stray ``print``) can reach the wire; both are restored afterwards.
Terminals and regular files keep the SDK's transport: making a terminal non-blocking would
change it for the shell that shares it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import IO

import anyio

# Longest line read: far above any valid request (content is capped at 64 KiB), low enough that
# a client streaming garbage without newlines cannot grow the buffer without bound.
MAX_LINE_BYTES = 16 * 1024 * 1024

STDIN, STDOUT, STDERR = 0, 1, 2

logger = logging.getLogger(__name__)


class ClientGone(anyio.ClosedResourceError):
    """The client closed its end of stdout: nothing can be written any more. (anyio's
    ClosedResourceError, which the SDK's stdout writer takes as the end of its stream.)"""


def std_pipes_usable() -> bool:
    """Whether stdin and stdout are both pipes or sockets (not terminals, not files)."""
    try:
        return all(_is_pipe_like(os.fstat(fd).st_mode) for fd in (STDIN, STDOUT))
    except OSError:
        return False


def _is_pipe_like(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


# Given a line read from stdin: the answer to write back for a line the session cannot read
# (the line then does not reach it), or None for a line to pass on (see ``std_pipes``).
Refusal = Callable[[str], "str | None"]


class LineReader:
    """The lines of a pipe as text, ending at end of file. A line ``refuse`` has an answer for
    is answered on ``writer`` and not passed on (the SDK's session drops a line it cannot read
    without a word, and the client would wait for ever). An over-long line comes out as text
    that is not JSON, so it is refused too instead of the reader dying."""

    def __init__(self, reader: asyncio.StreamReader, writer: LineWriter | None = None,
                 refuse: Refusal | None = None) -> None:
        self._reader, self._writer, self._refuse = reader, writer, refuse

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        while True:
            line = await self._next_line()
            answer = self._refuse(line) if self._refuse is not None else None
            if answer is None or self._writer is None:
                return line
            with suppress(ClientGone):  # nobody to tell: the session ends at end of file
                await self._writer.write(answer)
                await self._writer.flush()

    async def _next_line(self) -> str:
        try:
            line = await self._reader.readline()
        except ValueError:  # over MAX_LINE_BYTES: asyncio has dropped what it buffered
            return "line too long\n"
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class _WriteFlow(asyncio.BaseProtocol):
    """Flow control of a write pipe: ``drained`` is set while the pipe accepts more."""

    def __init__(self) -> None:
        self.drained = asyncio.Event()
        self.drained.set()
        self.lost = False
        self.ending = False  # set when the session ends and we close the pipe ourselves

    def pause_writing(self) -> None:
        self.drained.clear()

    def resume_writing(self) -> None:
        self.drained.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ending:
            logger.warning("the client closed the server's stdout: answers are dropped until it closes stdin")
        self.lost = True
        self.drained.set()  # wake a waiting flush, which then sees ``lost``


class LineWriter:
    """Text written to a pipe; ``flush`` waits until the pipe has taken it (backpressure
    without a thread)."""

    def __init__(self, transport: asyncio.WriteTransport, flow: _WriteFlow) -> None:
        self._transport, self._flow = transport, flow

    async def write(self, text: str) -> None:
        if self._flow.lost or self._transport.is_closing():
            raise ClientGone("the client closed stdout")
        self._transport.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._flow.drained.wait()
        if self._flow.lost:
            raise ClientGone("the client closed stdout")


@asynccontextmanager
async def std_pipes(refuse: Refusal | None = None) -> AsyncIterator[tuple[LineReader, LineWriter]]:
    """stdin and stdout on the running loop, diverted away from fds 0 and 1 meanwhile; lines
    ``refuse`` has an answer for are answered, not read (``LineReader``)."""
    loop = asyncio.get_running_loop()
    wire_in, wire_out = os.dup(STDIN), os.dup(STDOUT)
    write_transport: asyncio.WriteTransport | None = None
    read_transport: asyncio.BaseTransport | None = None
    flow = _WriteFlow()
    _divert_std_fds()
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), _unowned(wire_in, "rb")
        )
        write_transport, _ = await loop.connect_write_pipe(lambda: flow, _unowned(wire_out, "wb"))
        writer = LineWriter(write_transport, flow)
        yield LineReader(reader, writer, refuse), writer
    finally:
        flow.ending = True
        for transport in (read_transport, write_transport):
            if transport is not None:
                transport.close()
        _restore_std_fds(wire_in, wire_out)


def _unowned(fd: int, mode: str) -> IO[bytes]:
    """A file object over ``fd`` that leaves the descriptor open when the transport closes it
    (it is needed afterwards to put fds 0 and 1 back)."""
    return os.fdopen(fd, mode, buffering=0, closefd=False)


def _divert_std_fds() -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, STDIN)
    finally:
        os.close(null)
    sys.stdout.flush()
    os.dup2(STDERR, STDOUT)


def _restore_std_fds(wire_in: int, wire_out: int) -> None:
    for wire, fd in ((wire_in, STDIN), (wire_out, STDOUT)):
        with suppress(OSError):
            os.set_blocking(wire, True)  # asyncio made the shared file description non-blocking
            os.dup2(wire, fd)
        os.close(wire)
