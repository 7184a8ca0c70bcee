"""The usage page's numbers: per UTC day and per API key × alias, the requests, errors, prompt and
completion tokens, the median and 95th percentile of the time to the first token and the median tokens
per second; the same per key and over all, the chart's geometry and the CSV.

Two queries, however many rows. Over a range of days both read only the covering index
`requestlog_usage`, never the rows and their bodies (with a key or an alias, SQLite picks that column's
index instead, for fewer rows):
- the counts and sums: one GROUP BY (UTC day, key, alias);
- the percentiles: SQLite has no percentile aggregate, and a window-function query (ROW_NUMBER() OVER
  (PARTITION BY day, key, alias ORDER BY ttft_ms) beside COUNT(*) OVER the same partition, keeping the
  ranks each percentile needs) sorts the whole range once per measure: 350 ms each at 100,000 rows. So
  one query reads just (day, key, alias, ttft_ms, tokens_per_second) and Python sorts each group's
  values: about 250 ms in all at 100,000 rows (bench/history_page.py times the page).
Percentiles are interpolated between the two closest ranks, as PostgreSQL's percentile_cont and numpy
do: the median of an even count is the mean of the middle two.
"""
from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable, Iterator, Sequence

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils.timezone import localtime

NO_KEY, PASS_THROUGH = "(no key)", "(no alias)"
NONE = "(none)"  # the key or alias filter's value for requests without one (adminui.filters)
CSV_FIELDS = ("day", "key", "alias", "requests", "errors", "prompt_tokens", "completion_tokens",
              "ttft_median_ms", "ttft_p95_ms", "tokens_per_second_median")
KEY_COLOURS = 8  # the chart's key-0 … key-7 classes in history.css, used in turn
CHART_W, CHART_H, PAD_L, PAD_B = 720, 180, 56, 22

Group = tuple[date, str, str]  # (UTC day, key name, alias)


class UtcDay(TruncDate):
    """The UTC calendar day of a datetime. On SQLite, its own date() of the stored UTC text: Django's
    TruncDate calls a Python function there for each row, three times slower at 100,000 rows."""

    def __init__(self, expression):
        super().__init__(expression, tzinfo=timezone.utc)

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.lhs)
        return f"date({sql})", params


@dataclass
class Usage:
    """The figures of one group of requests: a (day, key, alias) row, a key's total (no day, no alias)
    or the total of all (no key either)."""

    day: date | None = None
    key_name: str | None = None
    alias: str | None = None
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_median: float | None = None
    ttft_p95: float | None = None
    tps_median: float | None = None

    @property
    def key_label(self) -> str:
        return self.key_name or NO_KEY

    @property
    def alias_label(self) -> str:
        return self.alias or PASS_THROUGH

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add_counts(self, other: Usage):
        self.requests += other.requests
        self.errors += other.errors
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def set_timings(self, times: Timings):
        """The percentiles of `times`, whose lists it sorts in place."""
        times.ttfts.sort()
        times.speeds.sort()
        self.ttft_median, self.ttft_p95 = percentile(times.ttfts, 0.5), percentile(times.ttfts, 0.95)
        self.tps_median = percentile(times.speeds, 0.5)


@dataclass
class Timings:
    """The values a group's percentiles are taken from: times to the first token, tokens per second."""

    ttfts: list[float] = field(default_factory=list)
    speeds: list[float] = field(default_factory=list)


@dataclass
class Report:
    rows: list[Usage]      # newest day first, then by key and alias
    per_key: list[Usage]   # busiest key first
    total: Usage


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile (0.5: the median) of sorted values, interpolated between the two
    closest ranks; None for no values."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def day_range(start: date, end: date) -> tuple[datetime, datetime]:
    """The instants from `start`'s first UTC moment to the end of `end` (excluded)."""
    return (datetime.combine(start, time.min, timezone.utc),
            datetime.combine(end + timedelta(days=1), time.min, timezone.utc))


def report(qs: QuerySet) -> Report:
    """The usage of a (filtered) request-log queryset, in two queries."""
    return build(sums(qs), timings(qs))


def sums(qs: QuerySet) -> dict[Group, Usage]:
    """Counts and token sums per (UTC day, key, alias): one GROUP BY."""
    grouped = (qs.annotate(day=UtcDay("started_at")).values("day", "key_name", "alias").order_by()
               .annotate(requests=Count("pk"), errors=Count("pk", filter=Q(status__gte=400)),
                         prompt=Coalesce(Sum("prompt_tokens"), 0),
                         completion=Coalesce(Sum("completion_tokens"), 0)))
    return {(g["day"], g["key_name"], g["alias"]): Usage(
        g["day"], g["key_name"], g["alias"], g["requests"], g["errors"], g["prompt"], g["completion"])
        for g in grouped}


def timings(qs: QuerySet) -> dict[Group, Timings]:
    """Each group's times to the first token and tokens per second (not zero), read in one query."""
    values = (qs.filter(Q(ttft_ms__isnull=False) | Q(tokens_per_second__gt=0))
              .annotate(day=UtcDay("started_at")).order_by()
              .values_list("day", "key_name", "alias", "ttft_ms", "tokens_per_second"))
    found: dict[Group, Timings] = defaultdict(Timings)
    for day, key_name, alias, ttft, speed in values.iterator(chunk_size=10_000):
        group = found[day, key_name, alias]
        if ttft is not None:
            group.ttfts.append(ttft)
        if speed:
            group.speeds.append(speed)
    return found


def build(sums: dict[Group, Usage], timings: dict[Group, Timings]) -> Report:
    """The rows with their percentiles, and the totals per key and over all (pure)."""
    per_key: dict[str, Usage] = {}
    key_timings: dict[str, Timings] = defaultdict(Timings)
    total, all_timings = Usage(), Timings()
    for group, row in sums.items():
        times = timings.get(group, Timings())
        row.set_timings(times)
        per_key.setdefault(row.key_name, Usage(key_name=row.key_name)).add_counts(row)
        total.add_counts(row)
        for pooled in (key_timings[row.key_name], all_timings):   # sorted runs, so they sort by merging
            pooled.ttfts += times.ttfts
            pooled.speeds += times.speeds
    for key_name, usage in per_key.items():
        usage.set_timings(key_timings[key_name])
    total.set_timings(all_timings)
    rows = sorted(sums.values(), key=lambda r: (r.key_name, r.alias))
    rows.sort(key=lambda r: r.day, reverse=True)
    return Report(rows, sorted(per_key.values(), key=lambda u: (-u.requests, u.key_name)), total)


def history_query(usage: Usage, start: date, end: date) -> dict[str, str]:
    """The history list's filters (adminui.filters.HistoryFilter) for a row's requests, or a key's over
    the page's days; NONE for the requests without a key or an alias. Its times are local (TIME_ZONE),
    so the UTC day is given in local time."""
    since, until = day_range(usage.day or start, usage.day or end)
    query = {"since": f"{localtime(since):%Y-%m-%dT%H:%M}", "until": f"{localtime(until):%Y-%m-%dT%H:%M}"}
    if usage.key_name is not None:
        query["key"] = usage.key_name or NONE
    if usage.alias is not None:
        query["alias"] = usage.alias or NONE
    return query


def chart(rows: Iterable[Usage], keys: Sequence[str], start: date, end: date) -> dict:
    """Tokens (prompt + completion) per day, a bar per day stacked by key in the order of `keys`,
    scaled to the busiest day."""
    per_day: dict[date, dict[str, Usage]] = defaultdict(dict)
    for row in rows:
        per_day[row.day].setdefault(row.key_name, Usage(row.day, row.key_name)).add_counts(row)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    top = max((sum(u.tokens for u in per_day[d].values()) for d in days), default=0) or 1
    plot_w, plot_h = CHART_W - PAD_L, CHART_H - PAD_B
    slot = plot_w / len(days)
    colour = {key_name: f"key-{i % KEY_COLOURS}" for i, key_name in enumerate(keys)}
    bars, labels = [], []
    for i, day in enumerate(days):
        x, y, segments = PAD_L + i * slot + slot * 0.1, plot_h, []
        for key_name in keys:
            usage = per_day[day].get(key_name)
            if usage is None:
                continue
            height = plot_h * usage.tokens / top
            y -= height
            segments.append({"y": y, "h": height, "class": colour[key_name], "title":
                             f"{day:%Y-%m-%d} · {usage.key_label}: {usage.tokens:,} tokens, "
                             f"{usage.requests:,} requests"})
        bars.append({"x": x, "w": slot * 0.8, "segments": segments})
        if i % max(len(days) // 7, 1) == 0:
            labels.append({"x": x, "text": f"{day:%b} {day.day}"})
    return {"width": CHART_W, "height": CHART_H, "plot_h": plot_h, "pad_l": PAD_L, "top": compact(top),
            "bars": bars, "labels": labels, "label_y": CHART_H - 6,
            "legend": [{"label": k or NO_KEY, "class": colour[k]} for k in keys]}


def compact(number: int) -> str:
    """A count for the chart's axis: 8289717 is "8.3M", 1500 is "1.5k"."""
    for size, unit in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if number >= size:
            return f"{number / size:.1f}".removesuffix(".0") + unit
    return str(number)


class _Line:
    """A file for `csv.writer` that hands back what is written instead of keeping it."""

    def write(self, text: str) -> str:
        return text


def csv_lines(rows: Iterable[Usage]) -> Iterator[str]:
    """The header, then a line per row: the key and alias as stored (empty: no key, pass-through),
    numbers unformatted, times in ms to the microsecond, empty when there were none."""
    writer = csv.writer(_Line())
    yield writer.writerow(CSV_FIELDS)
    for r in rows:
        timings = (_number(v) for v in (r.ttft_median, r.ttft_p95, r.tps_median))
        yield writer.writerow([r.day.isoformat(), r.key_name, r.alias, r.requests, r.errors, r.prompt_tokens,
                               r.completion_tokens, *timings])


def _number(value: float | None) -> str:
    return "" if value is None else str(round(value, 3))
