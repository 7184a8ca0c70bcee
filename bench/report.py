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
# Targets from issue #17.
MAX_SIZE_RATIO = 1.5          # for the largest conversation, 8 MB
SIZE_WITH_TARGET = "8 MB"
MAX_STREAMS_RSS_MB = 300.0
MAX_VERSION_P99_MS = 50.0
# Target from issue #23.
MAX_KEYED_ADDED_MS = 0.2


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
    if isinstance(value, int):  # a count
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def endpoint_rows(name: str, r: dict) -> list[Row]:
    """Rows for one endpoint from its medians, `r[metric][target]` (targets: direct, log on, log off)."""
    ttfb, stream = r["ttfb_ms"], r["stream_ms"]
    added = ttfb["log on"] - ttfb["direct"]
    ratio = stream["log on"] / stream["direct"]
    rows = [
        Row(f"{name} TTFB, streamed (ms)", ttfb["direct"], ttfb["log on"], f"+{added:.2f} ms",
            f"<= +{MAX_ADDED_TTFB_MS:g} ms", added <= MAX_ADDED_TTFB_MS),
    ]
    if "runserver" in ttfb:
        added = ttfb["runserver"] - ttfb["direct"]
        rows.append(Row(f"{name} TTFB under manage.py runserver (ms)", ttfb["direct"], ttfb["runserver"],
                        f"+{added:.2f} ms", f"<= +{MAX_ADDED_TTFB_MS:g} ms", added <= MAX_ADDED_TTFB_MS))
    rows += [
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


def keyed_rows(keyed: dict) -> list[Row]:
    """A request with an API key (scoped, every limit set) against the same request without one."""
    unkeyed, with_key = keyed["ttfb_ms"]["no key"], keyed["ttfb_ms"]["keyed"]
    added = with_key - unkeyed
    return [Row(f"{keyed['path']} TTFB, keyed vs no key (ms)", unkeyed, with_key, f"{added:+.2f} ms",
                f"<= +{MAX_KEYED_ADDED_MS:g} ms", added <= MAX_KEYED_ADDED_MS)]


def memory_rows(memory: dict) -> list[Row]:
    before, after, peak = memory["before"]["rss_mb"], memory["after"]["rss_mb"], memory["after"]["peak_mb"]
    growth = after - before
    return [
        Row("proxy peak RSS, VmHWM (MB)", None, peak, "-", f"<= {MAX_RSS_MB:g} MB", peak <= MAX_RSS_MB),
        Row(f"proxy RSS before | after {memory['requests']:,} requests (MB)", before, after,
            f"{growth:+.1f} MB", f"flat (<= +{MAX_RSS_GROWTH_MB:g} MB)", growth <= MAX_RSS_GROWTH_MB),
    ]


def size_rows(sizes: dict) -> list[Row]:
    """One row per dialect and conversation size: median ms direct vs proxy, and the ratio."""
    rows = []
    for path, by_size in sizes.items():
        for label, r in by_size.items():
            direct, proxy = r["ms"]["direct"], r["ms"]["log on"]
            ratio = proxy / direct
            target, met = ("-", None) if label != SIZE_WITH_TARGET else (f"<= {MAX_SIZE_RATIO:g}x",
                                                                         ratio <= MAX_SIZE_RATIO)
            rows.append(Row(f"{path} {label} conversation, non-streamed (ms)", direct, proxy, f"{ratio:.2f}x",
                            target, met))
    return rows


def stream_rows(streams: dict) -> list[Row]:
    """The many-streams rows: direct = the same streams sent to the fake (for RSS: before; for
    /api/version: the proxy idle, before the streams)."""
    direct, proxy, plan = streams["direct"], streams["proxy"], streams["plan"]
    n, log = plan["streams"], proxy["log"]
    name = f"{n:,} streams @{1 / plan['delay']:g} tok/s"
    rows = [
        Row(f"{name}: errors", direct["errors"], proxy["errors"], "-", "0", proxy["errors"] == 0),
        Row(f"{name}: complete answers", direct["complete"], proxy["complete"], "-", f"{n:,}",
            proxy["complete"] == n),
        Row(f"{name}: request-log rows, one each", None, log["rows"], "-", f"{n:,}",
            log["rows"] == n and log["answers_with_id"] == n),
        Row(f"{name}: most open at once", direct["peak_concurrent"], proxy["peak_concurrent"], "-", "-",
            None),
    ]
    if direct["median_s"] and proxy["median_s"]:
        rows.append(Row(f"{name}: median stream time, {plan['tokens']} tokens (s)", direct["median_s"],
                        proxy["median_s"], f"{proxy['median_s'] / direct['median_s']:.2f}x", "-", None))
    before, peak = proxy["memory"]["before"]["rss_mb"], proxy["memory"]["after"]["peak_mb"]
    rows.append(Row(f"{name}: proxy RSS before | peak, VmHWM (MB)", before, peak, f"{peak - before:+.1f} MB",
                    f"<= {MAX_STREAMS_RSS_MB:g} MB", peak <= MAX_STREAMS_RSS_MB))
    fake, cpu = direct["server_cpu"], proxy["server_cpu"]
    return rows + version_rows(name, proxy) + [
        Row(f"{name}: bench client CPU (% of a core)", direct["client_cpu"] * 100, proxy["client_cpu"] * 100,
            "-", "-", None),
        # direct: the fake LM Studio serving the streams itself (on the core it shares with the client)
        Row(f"{name}: server CPU, user + system (% of a core)", (fake["user"] + fake["system"]) * 100,
            (cpu["user"] + cpu["system"]) * 100,
            f"user {cpu['user'] * 100:.0f}%, system {cpu['system'] * 100:.0f}%", "-", None),
        # the streams' whole cost (opening them included) over their tokens
        Row(f"{name}: server CPU per token, user + system (us)",
            fake["user_us_per_token"] + fake["system_us_per_token"],
            cpu["user_us_per_token"] + cpu["system_us_per_token"],
            f"user {cpu['user_us_per_token']:.0f}, system {cpu['system_us_per_token']:.0f}", "-", None)]


def version_rows(name: str, proxy: dict) -> list[Row]:
    idle, loaded = proxy["version_idle"], proxy["version_loaded"]
    p99 = loaded["p99_ms"]
    met = p99 is not None and p99 <= MAX_VERSION_P99_MS and loaded["failures"] == 0
    compare = f"{p99 - idle['p99_ms']:+.1f} ms" if p99 is not None and idle["p99_ms"] is not None else "-"
    return [Row(f"{name}: /api/version p99, idle | during ({loaded['samples']} probes, "
                f"{loaded['failures']} failed) (ms)", idle["p99_ms"], p99, compare,
                f"<= {MAX_VERSION_P99_MS:g} ms", met)]


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
