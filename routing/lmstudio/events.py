"""Reading an upstream answer: its body as it arrives, its SSE events parsed once, a read timeout per
stream, and the events handed to the relay in the batches they arrived in.

The fast reads (`raw_reader`, `ReadWatchdog`) use private names of aiohttp and httpx-aiohttp, listed in
INTERNALS (why each: docs/internals.md). They are used only once the server's start-up check
(`shimsite.fast_path.start`) has found them, and every other name the fast path needs, and called
`use_internals(True)`; until then, and for good when one is missing or FAST_PATH is off, a stream is
read through httpx-aiohttp's own stream, with aiohttp's own read timeout.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import AsyncIterator

import httpx
import orjson
from httpx_aiohttp import transport as aiohttp_transport

from routing.core.errors import UpstreamError
from routing.core.internals import missing_from

# The private (or undocumented) names of aiohttp 3.14.5 and httpx-aiohttp 0.2.0 used below (requirements.txt
# pins both). "a.b.C.name": the module or class has it; "name in a.b.C.method": that code still uses it
# (set on instances there). Looked up when used, so that a missing one cannot stop the module loading.
INTERNALS = (
    "_aiohttp_response in httpx_aiohttp.transport.AiohttpResponseStream.__init__",
    "httpx_aiohttp.transport.map_aiohttp_exceptions",
    "aiohttp.connector.Connection.protocol",
    "aiohttp.client_proto.ResponseHandler.read_timeout",
    "aiohttp.client_proto.ResponseHandler._on_read_timeout",
)

_use_internals = False  # set once, at start-up, by `use_internals`


def use_internals(on: bool):
    """Read streams through aiohttp's internals (on) or through httpx-aiohttp's stream (off, the
    default). Called once, at start-up, by `shimsite.fast_path.start`, after `missing()` found nothing."""
    global _use_internals
    _use_internals = on


def missing() -> list[str]:
    """The entries of INTERNALS that the installed aiohttp and httpx-aiohttp lack (empty: all there)."""
    return missing_from(INTERNALS)


@contextlib.asynccontextmanager
async def raw_reader(response: httpx.Response):
    """An async function returning the next bytes of a response's body as they arrive (b"" at its end).

    On the aiohttp transport, aiohttp's own `readany`: everything received so far, without the two
    async generators the transport and httpx put around it (per token, under 1,000 streams), with
    aiohttp's errors turned into httpx's as the transport does. On any other transport (tests'), the
    transport's stream, closed here: httpx's `aiter_raw` would leave it to the garbage collector, which
    closes it through the loop's finalizer hook, a thread-safe wake-up per request."""
    aiohttp_response = getattr(response.stream, "_aiohttp_response", None) if _use_internals else None
    if aiohttp_response is not None:
        with aiohttp_transport.map_aiohttp_exceptions():
            yield aiohttp_response.content.readany
        return
    async with contextlib.aclosing(aiter(response.stream)) as pieces:
        yield lambda: anext(pieces, b"")


class ReadWatchdog:
    """A stream's read timeout with one timer per `timeout` period instead of one per network read.

    aiohttp re-arms its read timer on every chunk it receives: a timer made and cancelled per token,
    and a timer heap full of cancelled ones (12% of the CPU under 600 streams, py-spy). Once an answer's
    head is in, its timer is switched off and this watchdog fails the read the way aiohttp does (its
    read-timeout error, an httpx.ReadTimeout here) when nothing arrived for `timeout` seconds. On any
    other transport (tests' httpx transports), or without `use_internals`, it does nothing and the
    transport's own timeout (aiohttp's per-read timer) stands."""

    def __init__(self, response: httpx.Response, timeout: float | None):
        self.protocol = None
        if _use_internals:
            connection = getattr(getattr(response.stream, "_aiohttp_response", None), "connection", None)
            self.protocol = getattr(connection, "protocol", None)
        self.timeout = timeout
        self._handle: asyncio.TimerHandle | None = None
        self.last = 0.0

    def __enter__(self) -> ReadWatchdog:
        if self.protocol is not None and self.timeout:
            self.protocol.read_timeout = None  # aiohttp's per-chunk timer off for the rest of this answer
            self.loop = asyncio.get_running_loop()
            self.last = self.loop.time()
            self._handle = self.loop.call_later(self.timeout, self._check)
        return self

    def touch(self):
        if self._handle is not None:
            self.last = self.loop.time()

    def _check(self):
        idle = self.loop.time() - self.last
        if idle < self.timeout:
            self._handle = self.loop.call_later(self.timeout - idle, self._check)
        else:
            self._handle = None
            self.protocol._on_read_timeout()

    def __exit__(self, *exc_info):
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class EventStream:
    """An upstream SSE stream's events: iterate it for one event at a time, or `batches()` for lists
    of the events that arrived together (the relay writes each list as one chunk, so a client that
    lags behind gets fewer, larger writes instead of one per token). `aclose()` closes the response."""

    def __init__(self, batches: AsyncIterator[list[dict]]):
        self._batches = batches
        self._pending: collections.deque[dict] = collections.deque()

    def __aiter__(self):
        return self

    async def started(self) -> bool:
        """Wait until events are pending (the first ones are kept for `batches()`); False if the stream
        ended without more."""
        try:
            while not self._pending:
                self._pending.extend(await anext(self._batches))
        except StopAsyncIteration:
            return False
        return True

    async def __anext__(self) -> dict:
        if not await self.started():
            raise StopAsyncIteration
        return self._pending.popleft()

    async def batches(self) -> AsyncIterator[list[dict]]:
        if self._pending:
            yield list(self._pending)
            self._pending.clear()
        async for batch in self._batches:
            yield batch

    async def aclose(self):
        await self._batches.aclose()


_DONE = object()


def parse_sse_line(line: bytes):
    """One SSE line: a parsed `data:` event, `_DONE` for `[DONE]`, or None for anything else."""
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    if data == b"[DONE]":
        return _DONE
    if not data:
        return None
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UpstreamError(f"LM Studio sent an unreadable event: {data[:200]!r}") from None
    if not isinstance(event, dict):
        raise UpstreamError(f"LM Studio sent an unexpected event: {data[:200]!r}")
    if event.get("error"):
        raise UpstreamError(f"LM Studio: {error_message(event)}")
    return event


def parse_sse_lines(lines: list[bytes]) -> tuple[list[dict], object]:
    """The events in some SSE lines, and how they end: None (more to come), `_DONE`, or the
    UpstreamError of an unreadable or error event (the events before it are still relayed)."""
    batch = []
    for line in lines:
        try:
            event = parse_sse_line(line)
        except UpstreamError as exc:
            return batch, exc
        if event is _DONE:
            return batch, _DONE
        if event is not None:
            batch.append(event)
    return batch, None


def error_message(body) -> str:
    """The message inside an LM Studio/OpenAI error body (`{"error": {"message"}}` or `{"error": str}`)."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(body)
