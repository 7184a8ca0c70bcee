"""The benchmark's one table: each measurement next to its direct counterpart and the issue's target.

Targets are reported, never enforced: the benchmark exits 0 whether or not they are met.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

# Targets from issue #7.
MAX_ADDED_TTFB_MS = 2.0
MAX_STREAM_RATIO = 1.3
MIN_REQUESTS_PER_S = 500.0
MAX_RSS_MB = 150.0
MAX_RSS_GROWTH_MB = 10.0  # "flat" over the long run: allocator noise, no per-request leak
MAX_LOGGING_COST = 0.10


@dataclass
class Row:
    metric: str
    direct: float | None      # the baseline: the fake directly (or the log-off proxy, or "before")
    proxy: float | None
    compare: str              # ratio or delta, already formatted
    target: str
    met: bool | None          # None: informational, no target


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def endpoint_rows(name: str, r: dict) -> list[Row]:
    """Rows for one endpoint from its medians, `r[metric][target]` (targets: direct, log on, log off)."""
    ttfb, stream = r["ttfb_ms"], r["stream_ms"]
    added = ttfb["log on"] - ttfb["direct"]
    ratio = stream["log on"] / stream["direct"]
    rows = [
        Row(f"{name} TTFB, streamed (ms)", ttfb["direct"], ttfb["log on"], f"+{added:.2f} ms",
            f"<= +{MAX_ADDED_TTFB_MS:g} ms", added <= MAX_ADDED_TTFB_MS),
        Row(f"{name} {r['stream_tokens']}-token stream (ms)", stream["direct"], stream["log on"],
            f"{ratio:.2f}x", f"<= {MAX_STREAM_RATIO:g}x", ratio <= MAX_STREAM_RATIO),
    ]
    return rows + (throughput_rows(name, r["wrk"], r["connections"]) if r.get("wrk") else [])


def throughput_rows(name: str, wrk: dict, connections: int) -> list[Row]:
    direct, proxy, log_off = wrk["direct"], wrk["log on"], wrk["log off"]
    rps = proxy["requests_per_s"]
    rows = [Row(f"{name} non-streamed req/s @{connections}", direct["requests_per_s"], rps,
                f"{rps / direct['requests_per_s']:.2f}x", f">= {MIN_REQUESTS_PER_S:g} req/s",
                rps >= MIN_REQUESTS_PER_S)]
    for pct in ("p50", "p99"):
        key = f"{pct}_ms"
        rows.append(Row(f"{name} {pct} latency @{connections} (ms)", direct[key], proxy[key],
                        f"{proxy[key] / direct[key]:.2f}x", "-", None))
    cost = 1 - rps / log_off["requests_per_s"]
    rows.append(Row(f"{name} logging cost: req/s log off | log on", log_off["requests_per_s"], rps,
                    f"{cost:+.1%}", f"<= {MAX_LOGGING_COST:.0%}", cost <= MAX_LOGGING_COST))
    return rows


def memory_rows(memory: dict) -> list[Row]:
    before, after, peak = memory["before"]["rss_mb"], memory["after"]["rss_mb"], memory["after"]["peak_mb"]
    growth = after - before
    return [
        Row("proxy peak RSS, VmHWM (MB)", None, peak, "-", f"<= {MAX_RSS_MB:g} MB", peak <= MAX_RSS_MB),
        Row(f"proxy RSS before | after {memory['requests']:,} requests (MB)", before, after,
            f"{growth:+.1f} MB", f"flat (<= +{MAX_RSS_GROWTH_MB:g} MB)", growth <= MAX_RSS_GROWTH_MB),
    ]


def table(rows: list[Row]) -> str:
    header = ("metric", "direct", "proxy", "ratio/delta", "target", "met")
    cells = [header] + [(r.metric, _num(r.direct), _num(r.proxy), r.compare, r.target, _met(r.met))
                        for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = [" | ".join(c[i].ljust(widths[i]) if i in (0, 4) else c[i].rjust(widths[i])
                        for i in range(len(header))) for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def rows_as_json(rows: list[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
