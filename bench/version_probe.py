"""`/api/version` latency probed at a steady rate on one keep-alive connection, in a process of its own.

A separate process, so the probe's timings do not include the wait for the bench's own event loop (busy
reading a thousand streams) or for its GIL. Each sample is (monotonic start, seconds or None for a
failure); CLOCK_MONOTONIC is the same clock in every process, so the caller can cut the samples into
the windows it knows (idle, streams running).
"""
from __future__ import annotations

import math
import multiprocessing
import socket
import time

HEAD_END = b"\r\n\r\n"


def read_answer(sock: socket.socket) -> tuple[int, bool]:
    """(status, keep the connection) after reading one whole HTTP/1.1 answer (Content-Length or chunked)."""
    data = b""
    while HEAD_END not in data:
        piece = sock.recv(65536)
        if not piece:
            raise ConnectionError("closed before the answer's head")
        data += piece
    head, _, body = data.partition(HEAD_END)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        missing = int(headers["content-length"]) - len(body)
        while missing > 0:
            piece = sock.recv(65536)
            if not piece:
                raise ConnectionError("closed inside the answer's body")
            missing -= len(piece)
    elif headers.get("transfer-encoding") == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            piece = sock.recv(65536)
            if not piece:
                raise ConnectionError("closed inside the chunked body")
            body += piece
    return int(lines[0].split()[1]), headers.get("connection", "").lower() != "close"


def probe(address: tuple[str, int], interval: float, limit_s: float, stop, sender):
    """Send `GET /api/version` every `interval` seconds until `stop` is set (or `limit_s` passes)."""
    request = f"GET /api/version HTTP/1.1\r\nHost: {address[0]}:{address[1]}\r\n\r\n".encode()
    samples, sock = [], None
    next_at = started = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < limit_s:
        time.sleep(max(0.0, next_at - time.monotonic()))
        begin = time.monotonic()
        next_at = max(next_at + interval, begin)  # behind schedule: carry on, do not burst to catch up
        try:
            if sock is None:
                sock = socket.create_connection(address, timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            status, keep = read_answer(sock)
            samples.append((begin, time.monotonic() - begin if status == 200 else None))
        except OSError:
            samples.append((begin, None))
            keep = False
        if not keep and sock is not None:
            sock.close()
            sock = None
    sender.send(samples)


class VersionProbe:
    """`with VersionProbe(url...) as p: ...; samples = p.samples()`: the probe runs in the block."""

    def __init__(self, address: tuple[str, int], interval: float, limit_s: float):
        context = multiprocessing.get_context()
        self.stop = context.Event()
        self.receiver, sender = context.Pipe(duplex=False)
        self.process = context.Process(target=probe, args=(address, interval, limit_s, self.stop, sender),
                                       daemon=True)
        self.collected: list | None = None

    def __enter__(self) -> "VersionProbe":
        self.process.start()
        return self

    def samples(self) -> list[tuple[float, float | None]]:
        """Stop the probe (once) and return its samples."""
        if self.collected is None:
            self.stop.set()
            self.collected = self.receiver.recv() if self.receiver.poll(15) else []
            self.process.join(5)
        return self.collected

    def __exit__(self, *exc):
        self.samples()
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def latency_summary(samples: list[tuple[float, float | None]], start: float, end: float) -> dict:
    """p50/p99 (ms, nearest rank), count and failures of the samples started in [start, end]."""
    inside = [s for t, s in samples if start <= t <= end]
    ok = sorted(s for s in inside if s is not None)

    def rank(p: float) -> float | None:
        return ok[max(0, math.ceil(p * len(ok)) - 1)] * 1000 if ok else None

    return {"p50_ms": rank(0.50), "p99_ms": rank(0.99), "max_ms": ok[-1] * 1000 if ok else None,
            "samples": len(inside), "failures": len(inside) - len(ok)}
