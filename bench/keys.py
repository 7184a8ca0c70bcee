"""What an API key costs a request: the same streamed chat through two proxies started together for this
(fresh databases, the same settings), one serving it without a key (no key exists) and one where a key
exists and the request carries it — scoped to the alias, with every limit set (counted in the
process), so the whole key path runs: the gate's lookup, the scope, the limits' counts and the daily
tokens. Interleaved in blocks, as the other TTFB figures."""
from __future__ import annotations

import statistics

from bench import probes
from bench.servers import ALIAS, Processes
from tests.conftest import make_key, wait_for_key

UNKEYED, KEYED = "no key", "keyed"
LIMITS = ("--aliases", ALIAS, "--max-concurrent", "1000", "--requests-per-minute", "10000000",
          "--tokens-per-day", "1000000000000")


def start_keyed(procs: Processes) -> dict:
    """The two proxies, the second with one key; returns the header that carries it, once that proxy
    requires a key and serves this one (before it has read its keys, it serves anybody)."""
    procs.add_proxy(UNKEYED, REQUEST_LOG="true")
    proxy = procs.add_proxy(KEYED, REQUEST_LOG="true")
    key = make_key(proxy.server, "bench", *LIMITS)
    wait_for_key(proxy.server, key, timeout=10)
    return {"Authorization": f"Bearer {key}"}


def measure_keyed(procs: Processes, path: str, body: dict, rounds: int, block: int) -> dict:
    """Median TTFB (ms) of a streamed request without a key and with one, and every sample (s)."""
    headers = start_keyed(procs)
    urls = {UNKEYED: procs.proxies[UNKEYED].url, KEYED: procs.proxies[KEYED].url}
    for target in urls:  # warm up: connection pools, the key's counts
        for _ in range(block):
            probes.time_to_first_byte(urls[target], path, body, headers if target == KEYED else None)
    samples = probes.interleaved((UNKEYED, KEYED), rounds, lambda t: probes.time_to_first_byte(
        urls[t], path, body, headers if t == KEYED else None), block=block)
    return {"path": path, "ttfb_ms": {t: statistics.median(s) * 1000 for t, s in samples.items()},
            "samples_s": samples}
