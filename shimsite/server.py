"""What the HTTP server does before Django sees a request: the head is checked before the body is
read, bodies are cut at the limit, slow clients are dropped, and the process may hold many sockets.

Daphne (Twisted) receives a whole request body, into memory or a temporary file, before it calls the
ASGI application, and Django's handler then reads it again: a 1 GiB upload cost 800 MB of memory and a
401 only came after it. Daphne has no hook for this, so `install()` makes its HTTP factory (used by
`daphne` and by `manage.py runserver` alike) build `GatedRequest`s, which apply
`routing.security.access.head_refusal` as soon as the headers are in (host, origin, API key, declared length),
count a chunked body as it arrives and refuse it at MAX_REQUEST_BYTES, and give a client
CLIENT_READ_TIMEOUT seconds to send its request (an idle keep-alive connection is closed after as long).

All of this leans on private names of Twisted and Daphne. They are listed in
`shimsite.fast_path.TWISTED_AND_DAPHNE` (why each, and what is lost without it: docs/internals.md) and
checked once, at start-up, by `shimsite.fast_path.start`, which calls `install()` only when every one is
there; otherwise Daphne runs as shipped and `ApiAccessMiddleware` makes the same checks once the body is in.
"""
from __future__ import annotations

import gc
import logging
import resource
from urllib.parse import unquote, unquote_to_bytes

from daphne import http_protocol
from django.conf import settings
from twisted.internet import reactor, tcp
from twisted.web import http

from routing.core.errors import ClientTooSlow, PayloadTooLarge
from routing.core.paths import KEY_PATH_PREFIX, split_path_key
from routing.proxy import state
from routing.security.access import head_refusal, refusal_response
from routing.security.clients import client_of

log = logging.getLogger("routing.server")
LINGER_SECONDS = 2.0  # how long a refused upload is still read (and dropped) so the client sees the answer
LARGE_BODY = 1024 * 1024


class GatedRequest(http_protocol.WebRequest):
    """Daphne's request, refusing what `head_refusal` refuses before the body is read.

    Daphne hands the body to the application as it is and never reads Twisted's parsed form
    arguments, so Twisted's parsing of POST forms (a Content-Type parse through the `email` package
    per request) is switched off."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._parsePOSTFormSubmission = False
        self._refused = False
        self._received = 0
        self._clock = self.channel.factory.reactor  # the factory's (Twisted's idle timeout uses it too)
        self._deadline = self._clock.callLater(settings.CLIENT_READ_TIMEOUT, self._too_slow)

    # --- Twisted's callbacks, in the order they come -------------------------------------------

    def gotLength(self, length):
        self.content = BodyBuffer()  # what Twisted's gotLength does, with a file of its own
        if not isinstance(self.channel, http.HTTPChannel):
            # An HTTP/2 stream (only with TLS and the `h2` package, not in requirements.txt): Twisted
            # calls this while it converts the headers, before all are in. ApiAccessMiddleware decides.
            return
        headers = {name.decode("latin-1").lower(): values[0].decode("latin-1")
                   for name, values in self.requestHeaders.getAllRawHeaders()}
        method, (path, key) = self.channel._command.decode("latin-1"), split_path_key(self._path())
        if key:  # /k/<key>/...: the key in the path is the request's key (shimsite.path_keys)
            headers.pop("x-api-key", None)
            headers["authorization"] = f"Bearer {key}"
        problem = head_refusal(method, path, headers, headers.get("host", ""), state.current().keys.ring())
        if problem is not None:
            self._refuse(path, problem, body_expected=length != 0)

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and self._received > limit:
            problem = PayloadTooLarge(f"request body too large: more than {limit} bytes, the limit "
                                      f"(MAX_REQUEST_BYTES)")
            self._refuse(self._path(), problem, body_expected=True)
            return
        super().handleContentChunk(data)

    def handle_reply(self, message):
        """Daphne's, with what one ASGI message writes (head, chunk and frames) sent in one `send`."""
        transport = self.channel.transport if self.channel is not None else None
        if not hold(transport):
            return super().handle_reply(message)
        try:
            super().handle_reply(message)
        finally:
            send_held(transport)

    def process(self):
        self._stop_deadline()
        if self._refused:
            return None
        self._take_path_key()
        return super().process()

    def _take_path_key(self):
        """/k/<key>/...: Daphne gets (and logs) the path without the key, and the key as the request's
        `Authorization: Bearer` (the same rewrite as shimsite.path_keys, made here so that the access
        log never shows the key)."""
        if not self.path.startswith(KEY_PATH_PREFIX.encode()):
            return
        key, _, rest = self.path[len(KEY_PATH_PREFIX):].partition(b"/")
        query = self.uri.partition(b"?")[1:]
        self.path = b"/" + rest
        self.uri = self.path + b"".join(query)
        self.requestHeaders.removeHeader(b"x-api-key")
        self.requestHeaders.setRawHeaders(b"authorization", [b"Bearer " + unquote_to_bytes(key)])

    def connectionLost(self, reason):
        self._stop_deadline()
        super().connectionLost(reason)

    def finish(self):
        super().finish()
        if self._received >= LARGE_BODY:  # once the request's copies of it are gone
            release_free_memory_soon()

    # --- refusing ------------------------------------------------------------------------------

    def _path(self) -> str:
        """The request's path while its head or body is being received: Twisted's HTTP/1.1 channel
        holds it until the request is complete, and only then hands it to the request."""
        raw = self.channel._path if isinstance(self.channel, http.HTTPChannel) else self.channel.path
        return unquote(raw.split(b"?", 1)[0].decode("latin-1"))

    def _too_slow(self):
        self._deadline = None
        self._refuse("", ClientTooSlow(f"request not received within {settings.CLIENT_READ_TIMEOUT:g} s "
                                       f"(CLIENT_READ_TIMEOUT)"), body_expected=True)

    def _refuse(self, path: str, problem, body_expected: bool):
        """Answer `problem` on the raw connection and close it; what the client still sends is dropped.

        Written directly: Twisted's Request cannot answer a request it has not finished receiving."""
        self._refused = True
        self._stop_deadline()
        self._note(path, problem)
        self.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after the answer
        response = refusal_response(path, problem)
        head = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}".encode()]
        head += [f"{name}: {value}".encode("latin-1") for name, value in response.items()]
        head += [f"Content-Length: {len(response.content)}".encode(), b"Connection: close"]
        channel, transport = self.channel, self.channel.transport
        channel.dataReceived = lambda data: None  # no more parsing on this connection
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + response.content)
        if not body_expected or not hasattr(transport, "loseWriteConnection"):
            transport.loseConnection()
            return
        # Half-close, read and drop the rest for a moment (closing with unread data would reset the
        # connection and the client could lose the answer), then cut it.
        transport.loseWriteConnection()
        self._clock.callLater(LINGER_SECONDS, transport.abortConnection)

    def _note(self, path: str, problem):
        """Count the refusal (routing.proxy.refusals), with the client as the API would see it."""
        channel = self.channel
        transport = getattr(channel, "transport", None)
        peer = transport.getPeer() if transport is not None else None
        forwarded = b", ".join(self.requestHeaders.getRawHeaders(b"x-forwarded-for") or [])
        client = client_of(getattr(peer, "host", ""), {"x-forwarded-for": forwarded.decode("latin-1")})
        method = (getattr(channel, "_command", None) or b"").decode("latin-1")
        state.current().refusals.note(problem, method, path, client)

    def _stop_deadline(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None


class BodyBuffer:
    """A request body as Twisted receives it (`write`) and Daphne hands it on (`read`), in memory.

    Twisted spooled a body of 100 kB or more to a temporary file, which Daphne read back 8 kB at a time,
    one ASGI message each: an 8 MB body was 128 file writes, 1,024 reads and messages, and two more
    copies before the view saw it, a quarter of the proxy's time for that request (py-spy). Here the
    chunks are kept as they come and read in one piece. The body is bounded (MAX_REQUEST_BYTES, checked
    as it arrives) and is held in memory by the view anyway, to be parsed."""

    def __init__(self):
        self._chunks: list[bytes] = []
        self._size = 0
        self.closed = False

    def write(self, data: bytes):
        self._chunks.append(data)
        self._size += len(data)

    def tell(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = 0):
        """Only the rewinds Twisted and Daphne make before reading (the read always starts at 0)."""

    def read(self, size: int = -1) -> bytes:
        """All of the body not read yet, whatever `size` (Daphne sends it on as one message)."""
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        return data

    def close(self):
        self._chunks = []
        self.closed = True


_release_pending = False


def release_free_memory_soon():
    """`release_free_memory` in a second, once however many large bodies end before then."""
    global _release_pending
    if not _release_pending:
        _release_pending = True
        reactor.callLater(1.0, release_free_memory)


def release_free_memory():
    """Give the memory freed after a large body back to the system. A body arrives in hundreds of
    64 kB reads, and glibc keeps the heap they leave behind: without this, a 30 MiB request left the
    process 90 MiB larger for good (when Daphne also passed it on in 8 kB messages). The cycles a
    request leaves (and the body they may hold) are collected first: with GC_THRESHOLDS that could
    otherwise take a while. The trim is a no-op where there is no glibc."""
    global _release_pending
    _release_pending = False
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit, as Ollama does, so that a few hundred idle
    connections cannot lock clients out (macOS starts processes with 256). Returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (hard, 10240):  # macOS refuses RLIM_INFINITY above OPEN_MAX (10240)
        if wanted != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and wanted <= soft:
            return soft
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            return wanted
        except (ValueError, OSError):
            continue
    return soft


def write_through():
    """Make Twisted's TCP connections send at once what the socket takes, when nothing waits before it,
    and send what is written while a connection is `held` in one `send`.

    Twisted buffers every write and sends it when the reactor next reports the socket writable: on
    asyncio, an `add_writer` and a `remove_writer` per write (two epoll_ctl calls and the selector's
    bookkeeping), plus a loop iteration of delay. A streamed answer is one write per token: under 600
    streams that was a fifth of the proxy's CPU (py-spy). When the connection's buffer is empty, the
    data goes straight to `writeSomeData`, and only what the socket did not take is buffered as before;
    a full socket, an error or a closing connection take Twisted's usual path, unchanged."""
    from twisted.internet import abstract

    buffered_write, buffered_write_sequence = abstract.FileDescriptor.write, abstract.FileDescriptor.writeSequence
    tcp.Connection._held = None  # the writes held by `hold` (a list until `send_held`)

    def write(self, data):
        if isinstance(self, tcp.Connection) and type(data) is bytes and data:
            if self._held is not None:
                self._held.append(data)
                return
            data = unsent(self, data)
            if not data:
                return
        buffered_write(self, data)

    def write_sequence(self, iovec):
        if isinstance(self, tcp.Connection) and iovec and all(type(piece) is bytes for piece in iovec):
            write(self, b"".join(iovec))
            return
        buffered_write_sequence(self, iovec)

    abstract.FileDescriptor.write, abstract.FileDescriptor.writeSequence = write, write_sequence


def unsent(connection, data: bytes) -> bytes:
    """Send what the socket takes now, if nothing is buffered before it; returns the rest. A closing
    connection too: Twisted sends what it holds before it closes."""
    if (connection.dataBuffer or connection._tempDataBuffer or not connection.connected
            or connection._writeDisconnected or getattr(connection, "TLS", False)):
        return data
    sent = connection.writeSomeData(data)
    return data[sent:] if isinstance(sent, int) and sent > 0 else data  # else: would block, or lost


# Python collects its youngest generation every 700 new objects that are still alive; a thousand open
# streams keep a few hundred thousand objects alive, so collections ran hundreds of times a second and
# the full ones, over everything, paused the loop for up to 290 ms (gc.callbacks, bench/streams.py):
# 1.8 s of collection in a 10 s run. Collecting every 20,000 new objects took a fifth of that, in pauses
# of 30 ms at most (and one of 70 ms). Short-lived objects are freed by reference counting either way;
# only cycles wait longer.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc():
    """Freeze what start-up built (modules, settings, the URLconf: never garbage) out of the collector's
    reach, and collect the young generations less often (GC_THRESHOLDS)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _unproxied(module):
    """The module behind Twisted's deprecation proxy (`twisted.python.deprecate._ModuleProxy`)."""
    try:
        return object.__getattribute__(module, "_module")
    except AttributeError:
        return module


def hold(transport) -> bool:
    """Hold what is written to `transport` until `send_held`, which sends it in one `send`; False (and
    nothing held) when it is not a plain TCP connection or is held already.

    An answer's head, its first chunk and the chunked-encoding frames around a chunk are separate
    writes, each its own `send` and its own wake-up of the client; on loopback each `send` also runs
    the receiver's TCP processing (cProfile: 40 µs a `send` on the benchmark machine). `GatedRequest`
    holds them for one ASGI message."""
    if not isinstance(transport, tcp.Connection) or transport._held is not None:
        return False
    transport._held = []
    return True


def send_held(transport):
    data, transport._held = b"".join(transport._held), None
    if data:
        transport.write(data)


def gated(protocol):
    """One of Daphne's HTTP protocols (`HTTPFactory.buildProtocol`'s), made to build `GatedRequest`s,
    with CLIENT_READ_TIMEOUT as its idle timeout."""
    protocol.requestFactory = GatedRequest
    protocol.timeOut = settings.CLIENT_READ_TIMEOUT  # idle keep-alive connections
    return protocol


_installed = False


def install():
    """Make Daphne's HTTP factory build `GatedRequest`s (`gated`), send through (`write_through`), and
    skip Twisted's unused access log line. Called by `shimsite.fast_path.start` once it found every name
    this needs. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    build = http_protocol.HTTPFactory.buildProtocol

    def build_gated(factory, addr):
        protocol = build(factory, addr)
        return gated(protocol) if protocol is not None else None

    http_protocol.HTTPFactory.buildProtocol = build_gated
    # Daphne writes the access log itself; Twisted's own line per request was formatted and then
    # dropped by the logging setup (about 2% of a request's CPU).
    http_protocol.HTTPFactory.log = lambda factory, request: None
    # Twisted wraps `twisted.web.http` in a deprecation proxy, and Daphne looks `http.Request` up
    # through it on every chunk it writes: 4% of the CPU under 1,000 streams (py-spy). Daphne gets the
    # module itself.
    http_protocol.http = _unproxied(http_protocol.http)
    write_through()
