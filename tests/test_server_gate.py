"""The gate in Twisted (shimsite/server.py), fed raw HTTP bytes through Daphne's own HTTP factory and
Twisted's StringTransport: what a request's head decides before its body is read, the body cap, the
slow-client deadline (on a task.Clock); and the start-up check (shimsite/fast_path.py) that installs the
fast path only when every private name it needs is there, and otherwise nothing of it."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
import orjson
import pytest
from daphne import http_protocol
from django.core.signals import request_finished, request_started
from twisted.internet import abstract, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import http

from routing.lmstudio import events
from shimsite import fast_path, server

KEY = "gate-unit-key-0123456789"
INTERNALS_DOC = Path(__file__).resolve().parent.parent / "docs" / "internals.md"


# --- a connection to Daphne's HTTP protocol, as install() makes it ---------------------------------

class Application:
    """Daphne's server as its requests see it, recording what reaches the ASGI application."""

    server_name = "daphne"
    root_path = ""
    proxy_forwarded_address_header = None
    request_buffer_size = 8192

    def __init__(self):
        self.scopes: list[dict] = []
        self.messages: list[dict] = []

    def protocol_connected(self, request):
        pass

    def protocol_disconnected(self, request):
        pass

    def create_application(self, request, scope):
        self.scopes.append(scope)
        return SimpleNamespace(put_nowait=self.messages.append)

    def body(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.messages)


class ClientConnection(StringTransport):
    """A TCP connection as the gate sees it: it can also stop writing and keep reading."""

    write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return orjson.loads(self.body)


@dataclass
class Client:
    protocol: object
    transport: ClientConnection
    app: Application
    clock: Clock = field(default_factory=Clock)

    def send(self, data: bytes):
        self.protocol.dataReceived(data)

    def answer(self) -> Answer | None:
        """What the server wrote so far, parsed (None: nothing yet)."""
        raw = self.transport.value()
        if not raw:
            return None
        head, _, body = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        return Answer(int(status_line.split()[1]), headers, body)

    def closing(self) -> bool:
        return self.transport.write_closed or self.transport.disconnecting


@pytest.fixture
def connect():
    """A new client connection to Daphne's HTTP factory, its protocol made as `server.install` makes it
    (`server.gated`), with a Clock as the factory's reactor (the gate's deadlines and Twisted's idle
    timeout run on it)."""

    def make() -> Client:
        app, clock = Application(), Clock()
        factory = http_protocol.HTTPFactory(app)
        factory.reactor = clock
        protocol = server.gated(factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000)))
        transport = ClientConnection()
        protocol.makeConnection(transport)
        return Client(protocol, transport, app, clock)

    return make


def head(method: str, path: str, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


# --- the head decides before the body is read ------------------------------------------------------

def test_a_request_under_every_limit_is_dispatched_with_its_body_once_it_is_in(connect):
    client = connect()
    client.send(head("POST", "/api/chat", Host="localhost", Content_Length="11"))
    assert client.answer() is None and client.app.scopes == []  # waits for the body
    client.send(b'{"a": "hi"}')
    assert [scope["path"] for scope in client.app.scopes] == ["/api/chat"]
    assert client.app.body() == b'{"a": "hi"}'


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/admin/login/"])
def test_a_foreign_host_is_refused_with_400_before_the_body_is_read(connect, path):
    client = connect()
    client.send(head("POST", path, Host="evil.example", Content_Length="1000"))
    answer = client.answer()
    assert answer is not None and answer.status == 400, "answered only once the body is in"
    assert b"host not allowed" in answer.body and answer.headers["connection"] == "close"
    client.send(b"x" * 1000)  # what the client still sends is dropped, never dispatched
    assert client.app.scopes == [] and client.closing()


@pytest.mark.parametrize("path, error_of", [
    ("/api/chat", lambda body: body["error"]),
    ("/v1/chat/completions", lambda body: body["error"]["code"] == "invalid_api_key" and body["error"]["message"]),
    ("/v1/responses", lambda body: body["error"]["code"] == "invalid_api_key" and body["error"]["message"]),
    ("/v1/messages", lambda body: body["type"] == "error" and body["error"]["type"] == "authentication_error"
     and body["error"]["message"]),
])
@pytest.mark.parametrize("key_header", [{}, {"Authorization": "Bearer wrong-key"}, {"x_api_key": "wrong-key"}])
def test_an_api_request_without_the_key_is_a_401_in_the_dialects_shape_before_its_body(
        connect, settings, path, error_of, key_header):
    settings.API_KEY = KEY
    client = connect()
    client.send(head("POST", path, Host="localhost", Content_Type="application/json",
                     Content_Length=str(4 * 1024 * 1024), **key_header))
    answer = client.answer()
    assert answer is not None and answer.status == 401, "answered only once the body is in"
    assert "API key" in error_of(answer.json())
    assert answer.headers["www-authenticate"] == 'Bearer realm="api"'
    client.send(b"{}" * 1000)
    assert client.app.scopes == [] and client.closing()


def test_an_api_request_with_the_key_goes_through(connect, settings):
    settings.API_KEY = KEY
    client = connect()
    client.send(head("POST", "/v1/messages", Host="localhost", x_api_key=KEY, Content_Length="2") + b"{}")
    assert client.answer() is None
    assert [scope["path"] for scope in client.app.scopes] == ["/v1/messages"] and client.app.body() == b"{}"


def test_a_declared_length_over_the_limit_is_a_413_at_once(connect, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = connect()
    client.send(head("POST", "/v1/chat/completions", Host="localhost", Content_Length="1001"))
    answer = client.answer()
    assert answer is not None and answer.status == 413, "answered only once the body is in"
    assert "MAX_REQUEST_BYTES" in answer.json()["error"]["message"]
    client.send(b"x" * 1001)
    assert client.app.scopes == [] and client.closing()


def test_a_chunked_body_is_refused_with_413_when_it_passes_the_limit(connect, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = connect()
    client.send(head("POST", "/api/chat", Host="localhost", Transfer_Encoding="chunked"))
    client.send(chunk(b"x" * 600))
    assert client.answer() is None  # 600 bytes: under the limit, still read
    client.send(chunk(b"x" * 600))
    answer = client.answer()
    assert answer is not None and answer.status == 413, "the body was read past the limit"
    assert "MAX_REQUEST_BYTES" in answer.json()["error"]
    client.send(chunk(b"x" * 600) + b"0\r\n\r\n")  # the rest is dropped
    assert client.app.scopes == [] and client.transport.write_closed
    client.clock.advance(server.LINGER_SECONDS)  # then the connection is cut
    assert client.transport.disconnected


def test_a_chunked_body_of_exactly_the_limit_is_dispatched(connect, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = connect()
    client.send(head("POST", "/api/chat", Host="localhost", Transfer_Encoding="chunked"))
    client.send(chunk(b"x" * 600) + chunk(b"x" * 400) + b"0\r\n\r\n")
    assert client.answer() is None and client.app.body() == b"x" * 1000


# --- slow clients ---------------------------------------------------------------------------------

def test_a_client_trickling_its_headers_gets_a_408_after_client_read_timeout(connect, settings):
    settings.CLIENT_READ_TIMEOUT = 5
    client = connect()
    client.send(b"POST /api/chat HTTP/1.1\r\nHost: localhost\r\n")
    for _ in range(4):  # a header a second: never idle, so Twisted's idle timeout never fires
        client.clock.advance(1)
        client.send(b"X-Slow: 1\r\n")
    assert client.answer() is None
    client.clock.advance(1)
    answer = client.answer()
    assert answer is not None and answer.status == 408, "a trickling client kept the request open"
    assert b"CLIENT_READ_TIMEOUT" in answer.body and client.closing()


def test_a_client_trickling_its_body_gets_a_408(connect, settings):
    settings.CLIENT_READ_TIMEOUT = 5
    client = connect()
    client.send(head("POST", "/api/chat", Host="localhost", Content_Length="100"))
    for _ in range(5):
        client.send(b"x")
        client.clock.advance(1)
    answer = client.answer()
    assert answer is not None and answer.status == 408 and client.app.scopes == []


def test_a_request_received_in_time_is_not_cut_later(connect, settings):
    settings.CLIENT_READ_TIMEOUT = 5
    client = connect()
    client.send(head("GET", "/api/version", Host="localhost"))
    client.clock.advance(60)  # the application may take its time to answer
    assert client.answer() is None and len(client.app.scopes) == 1


# --- the start-up check ----------------------------------------------------------------------------

def test_the_pinned_versions_have_every_name_the_fast_path_uses():
    assert fast_path.missing() == [] and events.missing() == []


def test_a_renamed_private_attribute_is_named_by_missing(monkeypatch):
    def lineReceived(self, line):  # a Twisted that keeps the request line under other names
        self._verb, self._target = line.split(b" ")[:2]

    monkeypatch.setattr(http.HTTPChannel, "lineReceived", lineReceived)
    assert fast_path.missing() == ["_command in twisted.web.http.HTTPChannel.lineReceived",
                                   "_path in twisted.web.http.HTTPChannel.lineReceived"]


def test_missing_names_a_removed_attribute_and_a_changed_copy(monkeypatch):
    import aiohttp.client_proto

    monkeypatch.delattr(abstract.FileDescriptor, "_writeDisconnected")
    monkeypatch.delattr(aiohttp.client_proto.ResponseHandler, "_on_read_timeout")
    monkeypatch.setitem(fast_path.COPIED, "django.core.handlers.asgi.ASGIHandler.handle", "0" * 64)
    assert fast_path.missing() == ["twisted.internet.abstract.FileDescriptor._writeDisconnected",
                                   "django.core.handlers.asgi.ASGIHandler.handle as copied by "
                                   "shimsite/fast_path.py"]
    assert events.missing() == ["aiohttp.client_proto.ResponseHandler._on_read_timeout"]


@pytest.fixture
def installs(monkeypatch):
    """What `fast_path.start` may install, put back after the test whatever it did; returns a function
    that says whether anything was installed."""
    factory, descriptor = http_protocol.HTTPFactory, abstract.FileDescriptor
    for name in ("buildProtocol", "log"):
        monkeypatch.setattr(factory, name, getattr(factory, name))
    monkeypatch.setattr(http_protocol, "http", http_protocol.http)
    monkeypatch.setattr(descriptor, "write", descriptor.write)
    monkeypatch.setattr(descriptor, "writeSequence", descriptor.writeSequence)
    monkeypatch.setattr(tcp.Connection, "_held", None, raising=False)
    monkeypatch.setattr(server, "_installed", False)
    monkeypatch.setattr(events, "_use_internals", False)
    for signal in (request_started, request_finished):
        monkeypatch.setattr(signal, "receivers", list(signal.receivers))
        monkeypatch.setattr(signal, "sender_receivers_cache", {})

    def now() -> dict:
        return {"buildProtocol": factory.buildProtocol, "log": factory.log, "http": http_protocol.http,
                "write": descriptor.write, "writeSequence": descriptor.writeSequence,
                "receivers": (list(request_started.receivers), list(request_finished.receivers)),
                "aiohttp reads": events._use_internals}

    before = now()
    return lambda: [name for name, value in now().items() if value != before[name]]


def test_with_a_name_missing_start_installs_nothing_and_warns_once(monkeypatch, caplog, installs):
    monkeypatch.delattr(abstract.FileDescriptor, "_writeDisconnected")
    with caplog.at_level(logging.DEBUG, logger="routing.server"):
        assert fast_path.start(True) is False
    assert installs() == []
    [record] = [r for r in caplog.records if r.name == "routing.server"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "twisted.internet.abstract.FileDescriptor._writeDisconnected" in message
    assert "stock Daphne and Django behaviour" in message


def test_with_fast_path_off_start_installs_nothing_and_says_so(caplog, installs):
    with caplog.at_level(logging.DEBUG, logger="routing.server"):
        assert fast_path.start(False) is False
    assert installs() == []
    [record] = [r for r in caplog.records if r.name == "routing.server"]
    assert record.levelno == logging.INFO and "FAST_PATH is off" in record.getMessage()


def test_with_every_name_there_start_installs_the_whole_fast_path(caplog, installs):
    with caplog.at_level(logging.INFO, logger="routing.server"):
        assert fast_path.start(True) is True
    assert sorted(installs()) == ["aiohttp reads", "buildProtocol", "http", "log", "receivers", "write",
                                  "writeSequence"]
    assert not [r for r in caplog.records if r.name == "routing.server" and r.levelno >= logging.INFO]
    protocol = http_protocol.HTTPFactory(Application()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    assert protocol.requestFactory is server.GatedRequest  # as today: Daphne builds gated requests


def test_every_checked_name_is_documented_in_internals_md():
    text = INTERNALS_DOC.read_text(encoding="utf-8")
    names = [*fast_path.INTERNALS, *fast_path.COPIED, *events.INTERNALS]
    assert [name for name in names if f"`{name}`" not in text] == []


# --- aiohttp's reads fall back with the fast path ------------------------------------------------

class TransportStream(httpx.AsyncByteStream):
    """A response stream as httpx-aiohttp's, whose aiohttp response must not be touched when the
    internals are off."""

    def __init__(self, pieces: list[bytes]):
        self.pieces = pieces
        self._aiohttp_response = SimpleNamespace(  # aiohttp's, as the fast reads would use it
            content=SimpleNamespace(readany=None),
            connection=SimpleNamespace(protocol=SimpleNamespace(read_timeout=30.0)))

    async def __aiter__(self):
        for piece in self.pieces:
            yield piece


async def read_all(response: httpx.Response) -> bytes:
    received = b""
    async with events.raw_reader(response) as read:
        while piece := await read():
            received += piece
    return received


@pytest.mark.anyio
async def test_without_the_internals_a_stream_is_read_through_the_transport_with_its_own_timer(monkeypatch):
    monkeypatch.setattr(events, "_use_internals", False)
    response = httpx.Response(200, stream=TransportStream([b"data: 1\n", b"data: 2\n"]))
    assert await read_all(response) == b"data: 1\ndata: 2\n"
    with events.ReadWatchdog(response, 5.0) as watchdog:
        assert watchdog.protocol is None
    assert response.stream._aiohttp_response.connection.protocol.read_timeout == 30.0  # aiohttp's timer


@pytest.mark.anyio
async def test_with_the_internals_the_watchdog_takes_over_aiohttps_timer(monkeypatch):
    monkeypatch.setattr(events, "_use_internals", True)
    response = httpx.Response(200, stream=TransportStream([]))
    with events.ReadWatchdog(response, 5.0) as watchdog:
        assert watchdog.protocol is response.stream._aiohttp_response.connection.protocol
        assert watchdog.protocol.read_timeout is None
