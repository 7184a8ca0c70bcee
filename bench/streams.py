"""Many streams at once: N concurrent /api/chat streams at 20 tokens/s through one proxy process, and the
same streams sent directly to the fake LM Studio.

For the proxy: errors, complete answers (each ends with its dialect's end marker), one request-log row
per stream (matched by the X-Request-Id of each answer, read from the proxy's SQLite database once the
background writer has caught up), the proxy's peak RSS (VmHWM) and `/api/version` latency, probed at a
steady rate on a connection of its own (bench/version_probe.py) while the streams run.

The client is one asyncio loop with a bare `asyncio.Protocol` per stream (no HTTP library: it keeps the
answer's head and last bytes, nothing else), so it is not the bottleneck; its CPU use is reported. The
proxy runs with UPSTREAM_MAX_CONNECTIONS and MAX_CLIENT_REQUESTS above N (defaults: 256, and 64 per
client address), so the limits do not refuse streams.
"""
from __future__ import annotations

import asyncio
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import httpx

from bench import probes
from bench.servers import ALIAS, Processes, memory_mb
from bench.version_probe import VersionProbe, latency_summary
from tests.conftest import db_query

UPSTREAM_PATH = "/v1/chat/completions"
CLIENT_PATH = "/api/chat"
END = {"direct": b"[DONE]", "proxy": b'"done":true'}
HEAD_BYTES, TAIL_BYTES = 2048, 4096


@dataclass(frozen=True)
class StreamPlan:
    streams: int = 1000
    tokens: int = 100          # per stream; with `delay` the nominal length of a stream
    delay: float = 0.05        # seconds between tokens: 20 tokens/s
    ramp_s: float = 2.0        # the streams are opened evenly over this time
    timeout_s: float = 120.0   # every stream, from the first opened, ends (or fails) within this
    probe_interval: float = 0.01
    idle_probe_s: float = 2.0  # /api/version probed alone first: the idle baseline
    log_wait_s: float = 60.0   # for the request log's background writer

    def settings(self) -> dict[str, int]:
        """The proxy's limits for this run: above the number of streams."""
        return {"UPSTREAM_MAX_CONNECTIONS": self.streams + 256, "MAX_CLIENT_REQUESTS": self.streams + 256}


def raise_open_files(streams: int) -> dict:
    """Raise this process's soft open-file limit (the fake and the proxies, started after, inherit it):
    a client socket per stream here, and a client plus an upstream socket per stream in the proxy."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 3 * streams + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return {"soft": soft, "hard": hard, "wanted": wanted}


@dataclass
class Outcome:
    started: float
    first_byte: float | None
    ended: float
    status: int
    complete: bool
    request_id: str
    error: str


class StreamClient(asyncio.Protocol):
    """One raw `Connection: close` request; keeps the answer's head and last bytes only."""

    def __init__(self, raw: bytes, done: asyncio.Future):
        self.raw, self.done = raw, done
        self.head, self.tail, self.first_byte = b"", b"", None

    def connection_made(self, transport):
        transport.write(self.raw)

    def data_received(self, data: bytes):
        if self.first_byte is None:
            self.first_byte = time.monotonic()
        if len(self.head) < HEAD_BYTES:
            self.head += data[:HEAD_BYTES - len(self.head)]
        self.tail = (self.tail + data)[-TAIL_BYTES:]

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


def request_id_of(head: bytes) -> str:
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-request-id":
            return value.strip().decode()
    return ""


async def one_stream(address: tuple[str, int], raw: bytes, end: bytes, deadline: float) -> Outcome:
    """Open one stream and read it to its end, or fail at `deadline` (monotonic)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    client = StreamClient(raw, done)
    started, transport, error = time.monotonic(), None, ""
    try:
        transport, _ = await asyncio.wait_for(loop.create_connection(lambda: client, *address),
                                              deadline - time.monotonic())
        if exc := await asyncio.wait_for(done, deadline - time.monotonic()):
            error = repr(exc)
    except (OSError, asyncio.TimeoutError) as exc:
        error = repr(exc) or type(exc).__name__
    finally:
        if transport is not None:
            transport.close()
    status = probes.status_of(client.head)
    return Outcome(started, client.first_byte, time.monotonic(), status,
                   status == 200 and end in client.tail, request_id_of(client.head), error)


async def open_streams(address: tuple[str, int], raws: list[bytes], end: bytes, plan: StreamPlan) -> list:
    """All `raws` as concurrent streams, opened evenly over `plan.ramp_s`."""
    begin = time.monotonic()
    deadline = begin + plan.timeout_s
    tasks = []
    for i, raw in enumerate(raws):
        await asyncio.sleep(max(0.0, begin + i * plan.ramp_s / len(raws) - time.monotonic()))
        tasks.append(asyncio.create_task(one_stream(address, raw, end, deadline)))
    return await asyncio.gather(*tasks)


def peak_concurrency(outcomes: list[Outcome]) -> int:
    """The most streams answering at once (between an answer's first byte and its end)."""
    events = sorted([(o.first_byte, 1) for o in outcomes if o.first_byte] +
                    [(o.ended, -1) for o in outcomes if o.first_byte])
    peak = level = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def run_streams(url: str, raws: list[bytes], end: bytes, plan: StreamPlan) -> dict:
    """Run the streams; their outcome summary, the window they ran in and the client's CPU use."""
    parts = urlsplit(url)
    cpu, begin = time.process_time(), time.monotonic()
    outcomes = asyncio.run(open_streams((parts.hostname, parts.port), raws, end, plan))
    wall = time.monotonic() - begin
    durations = [o.ended - o.started for o in outcomes if o.complete]
    errors = [o for o in outcomes if o.error or o.status != 200]
    return {"streams": len(outcomes), "errors": len(errors), "complete": sum(o.complete for o in outcomes),
            "first_errors": sorted({f"{o.status} {o.error}" for o in errors})[:5],
            "median_s": statistics.median(durations) if durations else None,
            "max_s": max(durations) if durations else None, "wall_s": wall,
            "peak_concurrent": peak_concurrency(outcomes), "client_cpu": (time.process_time() - cpu) / wall,
            "window": (begin, time.monotonic()), "request_ids": [o.request_id for o in outcomes]}


def stream_request(url: str, path: str, body: dict) -> bytes:
    return probes.http_request(url, path, body)[1]


def proxy_requests(url: str, n: int) -> list[bytes]:
    """One /api/chat stream request per stream, each with a text of its own."""
    return [stream_request(url, CLIENT_PATH, {"model": ALIAS, "stream": True,
                                             "messages": [{"role": "user", "content": f"Stream {i}"}]})
            for i in range(n)]


def upstream_body(procs: Processes, url: str) -> dict:
    """The body the proxy sends the fake for one of these streams (the direct run's request)."""
    procs.fake.reset()
    procs.fake.script(tokens=2)
    body = {"model": ALIAS, "stream": True, "messages": [{"role": "user", "content": "Stream"}]}
    with httpx.stream("POST", f"{url}{CLIENT_PATH}", json=body, timeout=30) as answer:
        answer.raise_for_status()
        answer.read()
    return procs.fake.requests(UPSTREAM_PATH)[-1]["json"]


def logged_rows(server, request_ids: list[str], wait_s: float) -> dict:
    """How many streams have exactly one request-log row, waiting up to `wait_s` for the writer."""
    wanted = {rid for rid in request_ids if rid}
    deadline = time.monotonic() + wait_s
    while True:
        rows = db_query(server, "SELECT request_id, outcome FROM adminui_requestlog WHERE endpoint = ?",
                        CLIENT_PATH)
        found = [r for r in rows if r["request_id"] in wanted]
        if len(found) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    return {"rows": len(found), "ok_rows": sum(r["outcome"] == "ok" for r in found),
            "answers_with_id": len(wanted), "streams": len(request_ids)}


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def server_cpu(pid: int, before: tuple[float, float], result: dict, plan: StreamPlan) -> dict:
    """The CPU a server (the fake, or the proxy) used since `before` (`cpu_seconds`), while the streams
    of `result` ran: user and system, as a share of a core and per token (stream set-up included). The
    system part is the kernel's: for the proxy, a recv from LM Studio and a send to the client per token."""
    user, system = (after - was for after, was in zip(cpu_seconds(pid), before))
    start, end = result["window"]
    tokens = plan.streams * plan.tokens
    return {"user": user / (end - start), "system": system / (end - start),
            "user_us_per_token": user / tokens * 1e6, "system_us_per_token": system / tokens * 1e6}


def through_proxy(procs: Processes, proxy, plan: StreamPlan) -> dict:
    """The streams through `proxy`, with /api/version probed alone first and then while they run."""
    raws = proxy_requests(proxy.url, plan.streams)
    parts = urlsplit(proxy.url)
    before = memory_mb(proxy.pid)
    limit = plan.idle_probe_s + plan.timeout_s + 30
    with VersionProbe((parts.hostname, parts.port), plan.probe_interval, limit) as probe:
        time.sleep(plan.idle_probe_s)
        cpu = cpu_seconds(proxy.pid)
        result = run_streams(proxy.url, raws, END["proxy"], plan)
        result["server_cpu"] = server_cpu(proxy.pid, cpu, result, plan)
        samples = probe.samples()
    start, end = result.pop("window")
    # the idle window skips the probe's first half second (its connection, the view's first call)
    result["version_idle"] = latency_summary(samples, samples[0][0] + 0.5 if samples else 0, start)
    result["version_loaded"] = latency_summary(samples, start, end)
    result["memory"] = {"before": before, "after": memory_mb(proxy.pid)}
    result["log"] = logged_rows(proxy.server, result.pop("request_ids"), plan.log_wait_s)
    return result


def measure_streams(procs: Processes, plan: StreamPlan) -> dict:
    """The streams direct to the fake, then through a proxy of their own (request log on)."""
    proxy = procs.add_proxy("streams", REQUEST_LOG="true", **plan.settings())
    direct_body = upstream_body(procs, proxy.url)
    procs.fake.reset()
    procs.fake.script(tokens=plan.tokens, delay=plan.delay)
    cpu = cpu_seconds(procs.fake.proc.pid)
    direct = run_streams(procs.fake.url,
                         [stream_request(procs.fake.url, UPSTREAM_PATH, direct_body)] * plan.streams,
                         END["direct"], plan)
    direct["server_cpu"] = server_cpu(procs.fake.proc.pid, cpu, direct, plan)
    for key in ("window", "request_ids"):
        direct.pop(key)
    procs.fake.reset()  # the recording of the direct run
    procs.fake.script(tokens=plan.tokens, delay=plan.delay)
    try:
        through = through_proxy(procs, proxy, plan)
    finally:
        procs.fake.reset()
    return {"direct": direct, "proxy": through, "plan": asdict(plan), "settings": plan.settings()}
