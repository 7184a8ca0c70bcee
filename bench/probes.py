"""Measurements against one URL: raw-socket time to first byte and whole-stream time, and `wrk` runs.

The socket probes keep the client's own cost tiny and identical for the proxy and the fake, so the
difference between the two is what the proxy adds.
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson

WRK = shutil.which("wrk")


def http_request(url: str, path: str, body: dict, headers: dict | None = None) -> tuple[tuple[str, int], bytes]:
    """(address, raw HTTP/1.1 POST) for `body`; `Connection: close` so the answer ends at EOF."""
    parts = urlsplit(url)
    payload = orjson.dumps(body)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n{extra}"
            "Connection: close\r\n\r\n").encode()
    return (parts.hostname, parts.port), head + payload


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0


def time_to_first_byte(url: str, path: str, body: dict, headers: dict | None = None) -> float:
    """Seconds from the first request byte sent to the first response body byte received."""
    address, raw = http_request(url, path, body, headers)
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(raw)
        data = b""
        while (end := data.find(b"\r\n\r\n")) < 0 or len(data) <= end + 4:
            piece = sock.recv(65536)
            if not piece:
                raise RuntimeError(f"{url}{path}: connection closed before the body: {data[:200]!r}")
            data += piece
        elapsed = time.perf_counter() - start
    if status_of(data) != 200:
        raise RuntimeError(f"{url}{path}: {data[:300]!r}")
    return elapsed


def exchange(address: tuple[str, int], raw: bytes) -> tuple[float, bytes]:
    """(seconds from the first request byte to the end of the answer, the whole answer) for one
    raw `Connection: close` request."""
    chunks = []
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(raw)
        while piece := sock.recv(262144):
            chunks.append(piece)
        elapsed = time.perf_counter() - start
    return elapsed, b"".join(chunks)


# How far from the end of an answer its end marker may start: Responses' `response.completed` event
# carries the whole answer (about 20 KB for 2000 tokens).
TAIL_BYTES = 256 * 1024


def time_whole_stream(url: str, path: str, body: dict, expect: bytes) -> float:
    """Seconds from the first request byte to the end of the answer; checks the answer ends with
    `expect` (the dialect's end marker) so a truncated stream cannot pass for a fast one."""
    address, raw = http_request(url, path, body)
    elapsed, data = exchange(address, raw)
    if status_of(data) != 200 or expect not in data[-TAIL_BYTES:]:
        raise RuntimeError(f"{url}{path}: incomplete stream: {data[:200]!r} ... {data[-200:]!r}")
    return elapsed


def interleaved(targets: tuple[str, ...], rounds: int, measure, block: int = 1) -> dict[str, list]:
    """`measure(target)` `block` times in a row for every target, round after round, the order reversed
    every other round (so drift on the machine hits every target alike)."""
    samples = {t: [] for t in targets}
    for i in range(rounds):
        for target in (targets if i % 2 == 0 else targets[::-1]):
            samples[target] += [measure(target) for _ in range(block)]
    return samples


# --- wrk ---------------------------------------------------------------------------------------

LUA = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx answers plus socket errors


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def run_wrk(url: str, path: str, body: dict, *, connections: int, seconds: float,
            threads: int = 2) -> WrkResult:
    """One `wrk --latency` run POSTing `body` for whole `seconds`."""
    script = LUA.format(body=lua_string(orjson.dumps(body).decode()))
    with tempfile.TemporaryDirectory(prefix="shim-wrk-") as tmp:
        lua = Path(tmp) / "post.lua"
        lua.write_text(script)
        command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
                   "-s", str(lua), f"{url}{path}"]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def run_wrk_requests(url: str, path: str, body: dict, *, connections: int, requests: int) -> int:
    """Keep `wrk` POSTing `body` in short runs until at least `requests` answers; returns how many.
    (wrk runs for a duration; a Lua `thread:stop()` does not end its main thread's wait.)"""
    served = 0
    while served < requests:
        served += run_wrk(url, path, body, connections=connections, seconds=2).requests
    return served


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> WrkResult:
    """The numbers we report from wrk's text output."""
    def find(pattern: str) -> str | None:
        match = re.search(pattern, output, re.M)
        return match.group(1) if match else None

    errors = int(find(r"Non-2xx or 3xx responses: (\d+)") or 0)
    if socket_errors := find(r"Socket errors: (.*)$"):
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors))
    return WrkResult(requests_per_s=float(find(r"Requests/sec:\s+([\d.]+)")),
                     p50_ms=_ms(find(r"^\s+50%\s+(\S+)")), p99_ms=_ms(find(r"^\s+99%\s+(\S+)")),
                     requests=int(find(r"(\d+) requests in")), errors=errors)
