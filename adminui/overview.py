"""The overview page's numbers: requests, errors, median latency and tokens/s per alias, and the chart
geometry (inline SVG drawn by the template, no JavaScript)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from statistics import median

from django.utils.timezone import localtime

from .models import RequestLog

WINDOWS = {"1h": (timedelta(hours=1), timedelta(minutes=5)), "24h": (timedelta(days=1), timedelta(hours=1))}
CHART_W, CHART_H, PAD_L, PAD_B = 720, 180, 36, 22


@dataclass
class AliasStats:
    name: str
    requests: int = 0
    errors: int = 0
    durations: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float | None:
        return median(self.durations) if self.durations else None

    @property
    def median_tps(self) -> float | None:
        return median(self.speeds) if self.speeds else None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class Bucket:
    start: datetime
    ok: int = 0
    errors: int = 0


def collect(window: str, now: datetime | None = None) -> tuple[list[AliasStats], list[Bucket]]:
    """Per-alias stats (busiest first) and per-interval counts over the window ("1h" or "24h")."""
    span, step = WINDOWS[window]
    now = now or datetime.now(timezone.utc)
    since = now - span
    buckets = [Bucket(since + i * step) for i in range(int(span / step))]
    per_alias: dict[str, AliasStats] = {}
    rows = (RequestLog.objects.filter(started_at__gte=since)
            .values_list("started_at", "alias", "requested_model", "status", "duration_ms", "tokens_per_second"))
    for started_at, alias, requested, status, duration, speed in rows.iterator(chunk_size=5000):
        stats = per_alias.setdefault(alias or requested or "?", AliasStats(alias or requested or "?"))
        stats.requests += 1
        bucket = buckets[min(int((started_at - since) / step), len(buckets) - 1)]
        if status >= 400:
            stats.errors += 1
            bucket.errors += 1
        else:
            bucket.ok += 1
            stats.durations.append(duration)
            if speed:
                stats.speeds.append(speed)
    return sorted(per_alias.values(), key=lambda s: -s.requests), buckets


def request_chart(buckets: list[Bucket], label_format: str) -> dict:
    """Stacked bars (ok, errors) per interval, scaled to the busiest one."""
    top = max((b.ok + b.errors for b in buckets), default=0) or 1
    plot_w, plot_h = CHART_W - PAD_L, CHART_H - PAD_B
    slot = plot_w / max(len(buckets), 1)
    bars, labels = [], []
    for i, b in enumerate(buckets):
        x = PAD_L + i * slot + slot * 0.1
        ok_h, err_h = plot_h * b.ok / top, plot_h * b.errors / top
        title = f"{localtime(b.start):%H:%M}: {b.ok + b.errors} requests, {b.errors} errors"
        bars.append({"x": x, "w": slot * 0.8, "ok_y": plot_h - ok_h, "ok_h": ok_h,
                     "err_y": plot_h - ok_h - err_h, "err_h": err_h, "title": title})
        if i % max(len(buckets) // 6, 1) == 0:
            labels.append({"x": x, "text": localtime(b.start).strftime(label_format)})
    return {"width": CHART_W, "height": CHART_H, "plot_h": plot_h, "pad_l": PAD_L, "top": top,
            "bars": bars, "labels": labels, "label_y": CHART_H - 6}


def alias_bars(stats: list[AliasStats], value: str, width: int = 240) -> list[dict]:
    """Horizontal bar lengths for one per-alias measure ("median_ms" or "median_tps")."""
    values = [getattr(s, value) for s in stats]
    top = max((v for v in values if v), default=0) or 1
    return [{"w": round(width * (v or 0) / top, 1), "value": v} for v in values]
