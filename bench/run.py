"""Benchmark: the proxy under Daphne against a zero-delay fake LM Studio, side by side with the fake
itself, interleaved (proxy and direct rounds alternate, so drift on the machine hits both); then a size
sweep of non-streamed conversations up to 8 MB (bench/sizes.py) and many concurrent streams through one
proxy process (bench/streams.py).

    .venv/bin/python bench/run.py [--quick] [--json results.json]

Prints one table (metric, direct, proxy, ratio or delta, target, met) and exits 0 whatever the
numbers: it reports, it does not gate. See docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import keys, probes, report, sizes, streams  # noqa: E402
from bench.servers import ALIAS, Processes, client_on_fake_core, memory_mb, start_processes  # noqa: E402

UPSTREAM_PATH = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark"}]
# client path -> the bytes that end a complete stream in its dialect
ENDPOINTS = {"/api/chat": b'"done":true', "/v1/chat/completions": b"[DONE]",
             "/v1/messages": b'{"type":"message_stop"}', "/v1/responses": b'"type":"response.completed"'}


def client_body(path: str, stream: bool) -> dict:
    """The same one-message request in the dialect of `path`."""
    if path == "/v1/responses":
        return {"model": ALIAS, "input": MESSAGES[0]["content"], "stream": stream}
    body = {"model": ALIAS, "messages": MESSAGES, "stream": stream}
    return {**body, "max_tokens": 4096} if path == "/v1/messages" else body
TARGETS = ("direct", "log on", "log off")  # the fake itself, the proxy with the request log on / off
# and for the time to first byte, the proxy under `manage.py runserver` too (the command users run)
TTFB_TARGETS = (*TARGETS, "runserver")


@dataclass(frozen=True)
class Plan:
    ttfb_rounds: int = 6
    ttfb_block: int = 10  # consecutive samples per target in a round
    stream_samples: int = 7
    stream_tokens: int = 2000
    connections: int = 32
    wrk_rounds: int = 3
    wrk_seconds: float = 5.0
    rss_requests: int = 20_000
    sizes: tuple[str, ...] = tuple(sizes.SIZES)  # the size sweep's conversations (labels of sizes.SIZES)
    size_samples: int = 5
    streams: streams.StreamPlan = streams.StreamPlan()


QUICK = Plan(ttfb_rounds=1, ttfb_block=3, stream_samples=1, stream_tokens=200, wrk_rounds=1, wrk_seconds=1.0,
             rss_requests=500, sizes=("10 KB", "100 KB", "1 MB"), size_samples=3,
             streams=streams.StreamPlan(streams=100, tokens=40, ramp_s=0.5, timeout_s=60, idle_probe_s=1.0,
                                        log_wait_s=30))


@dataclass(frozen=True)
class Case:
    """One request, as sent to each target: the proxy gets the client body, the fake the body the
    proxy sent upstream for it (captured from the fake's recording), so both do the same work."""

    url: dict[str, str]
    path: dict[str, str]
    body: dict[str, dict]
    end: dict[str, bytes]


def capture_case(procs: Processes, path: str, stream: bool) -> Case:
    body = client_body(path, stream)
    procs.fake.reset()
    proxy = procs.proxies["log on"]
    httpx.post(f"{proxy.url}{path}", json=body, timeout=30).raise_for_status()
    upstream_body = procs.fake.requests(UPSTREAM_PATH)[-1]["json"]
    url = {"direct": procs.fake.url} | {label: p.url for label, p in procs.proxies.items()}
    return Case(url=url,
                path={t: UPSTREAM_PATH if t == "direct" else path for t in url},
                body={t: upstream_body if t == "direct" else body for t in url},
                end={t: b"[DONE]" if t == "direct" else ENDPOINTS[path] for t in url})


def interleaved(rounds: int, measure) -> dict[str, list]:
    return probes.interleaved(TARGETS, rounds, measure)


def median_ms(samples: dict[str, list[float]]) -> dict[str, float]:
    return {t: statistics.median(values) * 1000 for t, values in samples.items()}


def measure_endpoint(procs: Processes, path: str, plan: Plan, raw: dict) -> dict:
    """TTFB, whole-stream time and wrk throughput for one client path, all targets interleaved."""
    procs.fake.reset()
    streamed = capture_case(procs, path, stream=True)
    # In blocks: the proxies share a core, and one request each in turn left every proxy's caches cold
    # (0.8 ms more per request than the same proxy measured alone), while the fake has its core to itself.
    ttfb = probes.interleaved(TTFB_TARGETS, plan.ttfb_rounds, lambda t: probes.time_to_first_byte(
        streamed.url[t], streamed.path[t], streamed.body[t]), block=plan.ttfb_block)
    procs.fake.script(tokens=plan.stream_tokens)
    stream = interleaved(plan.stream_samples, lambda t: probes.time_whole_stream(
        streamed.url[t], streamed.path[t], streamed.body[t], streamed.end[t]))
    procs.fake.reset()
    result = {"ttfb_ms": median_ms(ttfb), "stream_ms": median_ms(stream),
              "stream_tokens": plan.stream_tokens, "connections": plan.connections}
    raw[path] = {"ttfb_s": ttfb, "stream_s": stream}
    if probes.WRK is None:
        return result
    whole = capture_case(procs, path, stream=False)

    def wrk(target: str, seconds: float) -> probes.WrkResult:
        return probes.run_wrk(whole.url[target], whole.path[target], whole.body[target],
                              connections=plan.connections, seconds=seconds)

    for target in TARGETS:  # warm up: connection pools, caches
        wrk(target, 1)
    runs = interleaved(plan.wrk_rounds, lambda t: wrk(t, plan.wrk_seconds))
    raw[path]["wrk"] = {t: [asdict(r) for r in rs] for t, rs in runs.items()}
    result["wrk"] = {t: {key: statistics.median(getattr(r, key) for r in rs)
                         for key in ("requests_per_s", "p50_ms", "p99_ms")} | {"errors": sum(r.errors for r in rs)}
                     for t, rs in runs.items()}
    return result


def measure_memory(procs: Processes, plan: Plan) -> dict:
    """The log-on proxy's RSS before and after `plan.rss_requests` non-streamed /api/chat requests."""
    proxy = procs.proxies["log on"]
    before = memory_mb(proxy.pid)
    if probes.WRK is not None:
        body = {"model": ALIAS, "messages": MESSAGES, "stream": False}
        served = probes.run_wrk_requests(proxy.url, "/api/chat", body, connections=plan.connections,
                                         requests=plan.rss_requests)
    else:
        with httpx.Client(timeout=30) as client:
            for _ in range(plan.rss_requests):
                client.post(f"{proxy.url}/api/chat", json={"model": ALIAS, "messages": MESSAGES, "stream": False})
        served = plan.rss_requests
    return {"before": before, "after": memory_mb(proxy.pid), "requests": served}


def run(plan: Plan) -> dict:
    open_files = streams.raise_open_files(plan.streams.streams)  # before the servers: they inherit it
    procs = start_processes({"log on": "true", "log off": "false", "runserver": "true"},
                            runserver=frozenset({"runserver"}))
    try:
        raw: dict = {}
        with client_on_fake_core():
            endpoints = {path: measure_endpoint(procs, path, plan, raw) for path in ENDPOINTS}
            keyed = keys.measure_keyed(procs, "/v1/chat/completions", client_body("/v1/chat/completions", True),
                                       plan.ttfb_rounds, plan.ttfb_block)
            memory = measure_memory(procs, plan)  # before the size sweep, whose 8 MB bodies raise the peak RSS
            by_size = sizes.measure_sizes(procs, ENDPOINTS, {s: sizes.SIZES[s] for s in plan.sizes},
                                          plan.size_samples)
        # The thousand streams' client is left to the scheduler: the fake's core is busy serving them.
        many = streams.measure_streams(procs, plan.streams)
        pinning = {"fake": procs.fake_pinned} | {f"proxy ({p.label})": p.pinned for p in procs.proxies.values()}
    finally:
        procs.close()
    return {"endpoints": endpoints, "keyed": keyed, "memory": memory, "sizes": by_size, "streams": many,
            "raw": raw,
            "meta": {"plan": asdict(plan), "pinning": pinning, "wrk": probes.WRK, "cpus": os.cpu_count(),
                     "open_files": open_files,
                     "load_average_at_end": os.getloadavg(), "python": platform.python_version(),
                     "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}}


def build_rows(results: dict) -> list[report.Row]:
    rows = [row for path, r in results["endpoints"].items() for row in report.endpoint_rows(path, r)]
    rows += report.keyed_rows(results["keyed"])
    rows += report.memory_rows(results["memory"]) + report.size_rows(results["sizes"])
    return rows + report.stream_rows(results["streams"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (few samples, 1 s wrk runs)")
    parser.add_argument("--json", metavar="FILE", help="also save every sample and the table as JSON")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    started = time.monotonic()
    results = run(plan)
    rows = build_rows(results)
    meta = results["meta"]
    print(f"pinning: {meta['pinning']}; wrk: {meta['wrk'] or 'missing (wrk rows skipped)'}; "
          f"load average at end: {', '.join(f'{x:.2f}' for x in meta['load_average_at_end'])}")
    print("direct = the fake LM Studio without the proxy (for 'logging cost': the proxy with the log off; "
          "for RSS: before the run; for /api/version: the proxy idle; for keyed: no key); proxy = request log on")
    settings = " ".join(f"{k}={v}" for k, v in results["streams"]["settings"].items())
    print(f"streams: a proxy of their own started with {settings}; /api/version probed every "
          f"{plan.streams.probe_interval * 1000:g} ms on a connection of its own\n")
    print(report.table(rows))
    print(f"\n{time.monotonic() - started:.0f} s")
    if args.json:
        results["table"] = report.rows_as_json(rows)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
