"""The server's gate under Daphne: hosts, browser origins, the API key and body sizes are decided on the
request's head, before its body is read; trickling clients are cut off. Raw sockets where an HTTP
client would hide what the server does (it would send the body before reading the answer)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.api_endpoints import API_ENDPOINTS
from tests.conftest import start_proxy, stop

pytestmark = pytest.mark.e2e

KEY = "gate-key-0123456789"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def gated(fake_lmstudio, tmp_path_factory):
    server = start_proxy(tmp_path_factory.mktemp("gate"), fake_lmstudio.url, API_KEY=KEY, CLIENT_READ_TIMEOUT=2,
                         MAX_REQUEST_BYTES=8 * MiB, CORS_ALLOWED_ORIGINS="https://chat.example")
    yield server
    stop(server.proc)


def address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def answer_to(server, head: bytes, timeout: float = 10.0) -> bytes:
    """Send only `head` (no body) and read what the server answers until it closes."""
    with socket.create_connection(address(server), timeout=timeout) as sock:
        sock.sendall(head)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


AUTH = {"Authorization": f"Bearer {KEY}"}


# --- hosts -------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["192.168.1.20:11434", "host.docker.internal:11434", "studio.local",
                                  "proxy.localhost:11434", "[fe80::1]:11434", "10.0.0.5", "localhost",
                                  socket.gethostname()])
@pytest.mark.parametrize("path", ["/api/tags", "/v1/models", "/admin/login/"])
def test_lan_and_docker_hosts_are_answered(gated, host, path):
    response = httpx.get(gated.url + path, headers={"Host": host, **AUTH})
    assert response.status_code == 200, response.text[:200]


@pytest.mark.parametrize("host", ["evil.example", "rebind.attacker.com:11434", "localhost.evil.example"])
@pytest.mark.parametrize("path", ["/api/tags", "/api/version", "/admin/login/", "/history/"])
def test_a_foreign_domain_name_is_refused_on_every_path(gated, host, path):
    response = httpx.get(gated.url + path, headers={"Host": host, **AUTH})
    assert response.status_code == 400
    assert "host not allowed" in response.text


# --- browser origins ---------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, body", API_ENDPOINTS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
def test_a_request_from_a_foreign_origin_is_refused_in_the_dialects_shape(gated, fake, method, path, body,
                                                                          content_type):
    headers = {"Origin": "http://evil.example", "Content-Type": content_type, **AUTH}
    response = httpx.request(method, gated.url + path, headers=headers,
                             content=orjson.dumps(body) if body is not None else None)
    assert response.status_code == 403
    error = response.json()["error"]
    message = error["message"] if path.startswith("/v1/") else error
    assert "origin not allowed" in message
    assert "access-control-allow-origin" not in response.headers
    assert fake.requests("/v1/chat/completions") == [] and fake.requests("/v1/completions") == []


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1:5173", "https://[::1]",
                                    "http://0.0.0.0:8080", "vscode-webview://abc123", "app://open-webui",
                                    "tauri://localhost", "file://", "https://chat.example"])
def test_allowed_origins_are_served_with_cors_headers(gated, origin):
    response = httpx.post(f"{gated.url}/api/show", json={"model": "coder"}, headers={"Origin": origin, **AUTH})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin


def test_a_preflight_from_an_allowed_origin_needs_no_key(gated):
    response = httpx.options(f"{gated.url}/api/chat", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "authorization" in response.headers["access-control-allow-headers"]


def test_clients_without_an_origin_are_unaffected(gated):
    assert httpx.get(f"{gated.url}/api/tags", headers=AUTH).status_code == 200


# --- bodies ------------------------------------------------------------------------------------

def test_a_declared_length_over_the_limit_is_refused_before_any_body_byte(gated):
    head = (f"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {100 * MiB}\r\n\r\n").encode()
    raw = answer_to(gated, head)  # no body is ever sent: the answer comes from the head alone
    assert status_of(raw) == 413
    assert b"MAX_REQUEST_BYTES" in raw


def test_the_api_key_is_checked_before_the_body_is_read(gated):
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {4 * MiB}\r\n\r\n").encode()
    raw = answer_to(gated, head)
    assert status_of(raw) == 401
    assert b'"invalid_api_key"' in raw and b"WWW-Authenticate: Bearer" in raw


def send_chunked(server, total: int, piece: int = MiB) -> tuple[int, bytes]:
    """Upload `total` bytes chunked (as fast as the server reads them); returns (bytes sent before the
    server stopped reading, its answer)."""
    sent, data = 0, b"x" * piece
    with socket.create_connection(address(server), timeout=20) as sock:
        sock.sendall((f"POST /api/chat HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {KEY}\r\n"
                      f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        try:
            while sent < total:
                sock.sendall(f"{piece:x}\r\n".encode() + data + b"\r\n")
                sent += piece
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server cut the upload
        try:
            answer = sock.recv(65536)
        except OSError:
            answer = b""
    return sent, answer


def test_a_chunked_body_is_cut_at_the_limit_and_memory_stays_flat(gated):
    pid = gated.proc.pid
    send_chunked(gated, 2 * MiB)  # warm up the paths a body takes
    before = rss_mib(pid)
    sent, answer = send_chunked(gated, 256 * MiB)
    time.sleep(0.5)
    after = rss_mib(pid)
    print(f"\nRSS before a 256 MiB chunked upload: {before:.1f} MiB, after: {after:.1f} MiB "
          f"(sent {sent / MiB:.0f} MiB before the cut)")
    assert status_of(answer) == 413  # refused at 8 MiB; the rest was read and dropped, never kept
    assert after - before < 32, f"RSS grew by {after - before:.1f} MiB"
    assert httpx.get(f"{gated.url}/api/version").status_code == 200


def test_memory_returns_after_large_accepted_bodies(gated):
    body = orjson.dumps({"model": "tiny", "stream": False, "messages": [{"role": "user", "content": "hi"}],
                         "padding": "x" * (7 * MiB)})
    with httpx.Client(headers={"Content-Type": "application/json", **AUTH}, timeout=60) as client:
        client.post(f"{gated.url}/api/chat", content=body)  # warm up
        time.sleep(1.5)
        before = rss_mib(gated.proc.pid)
        for _ in range(6):
            assert client.post(f"{gated.url}/api/chat", content=body).status_code == 200
    time.sleep(2.5)  # the server gives freed memory back a second after a large body
    after = rss_mib(gated.proc.pid)
    print(f"\nRSS before six 7 MiB bodies: {before:.1f} MiB, after: {after:.1f} MiB")
    assert after - before < 8, f"RSS grew by {after - before:.1f} MiB"


def test_a_body_under_the_limit_still_works_chunked(gated):
    body = orjson.dumps({"model": "coder", "stream": False, "messages": [{"role": "user", "content": "hi"}]})

    def pieces():
        yield body[:10]
        yield body[10:]

    response = httpx.post(f"{gated.url}/api/chat", content=pieces(),
                          headers={"Content-Type": "application/json", **AUTH})
    assert response.status_code == 200 and "You said: hi" in response.json()["message"]["content"]


# --- slow clients ------------------------------------------------------------------------------

def test_a_client_trickling_its_headers_is_cut_off(gated):
    closed_after = None
    with socket.create_connection(address(gated), timeout=10) as sock:
        sock.sendall(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\n")
        start = time.monotonic()
        sock.settimeout(0.5)
        for n in range(40):  # one header line every 0.5 s, for up to 20 s
            try:
                sock.sendall(f"X-Slow-{n}: 1\r\n".encode())
                data = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            closed_after = time.monotonic() - start
            assert data == b"" or status_of(data) == 408
            break
    assert closed_after is not None, "a trickling connection was still open after 20 s"


def test_an_idle_connection_is_closed(gated):
    with socket.create_connection(address(gated), timeout=15) as sock:
        assert sock.recv(1) == b""  # closed by the server, not by our timeout


def test_many_idle_connections_do_not_lock_clients_out(gated):
    limits = Path(f"/proc/{gated.proc.pid}/limits").read_text()
    soft, hard = next(line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files"))
    assert soft == hard  # the process raised its soft limit to the hard one
    idle = [socket.create_connection(address(gated)) for _ in range(200)]
    try:
        assert httpx.get(f"{gated.url}/api/version", timeout=10).status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_concurrent_uploads_while_served(gated):
    """A refused upload in flight does not disturb other clients."""
    thread = threading.Thread(target=send_chunked, args=(gated, 64 * MiB))
    thread.start()
    try:
        assert httpx.get(f"{gated.url}/api/tags", headers=AUTH, timeout=10).status_code == 200
    finally:
        thread.join(30)
