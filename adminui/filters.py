"""The history pages' filters: the list's (applied to a queryset or to a live row) with its keyset
pagination, and the usage page's."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from django import forms
from django.db.models import Q, QuerySet

from .usage import NONE, day_range

PAGE_SIZE = 50
LAST = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(days=1),
        "7d": timedelta(days=7)}
USAGE_DAYS = 30
def exact(value: str) -> str:
    """The stored value a key or alias filter means: "" for NONE."""
    return "" if value == NONE else value


def by_key_and_alias(qs: QuerySet, data: dict) -> QuerySet:
    """`qs` narrowed to the API key and the alias the filters name, if any (NONE: the rows without one)."""
    if data["key"]:
        qs = qs.filter(key_name=exact(data["key"]))
    if data["alias"]:
        qs = qs.filter(alias=exact(data["alias"]))
    return qs


class HistoryFilter(forms.Form):
    alias = forms.CharField(required=False, max_length=200)
    model = forms.CharField(required=False, max_length=200, help_text="LM Studio model id")
    key = forms.CharField(required=False, max_length=100,
                          help_text='API key name ("operator": API_KEY, "(none)": requests without a key)')
    api = forms.ChoiceField(required=False, choices=[("", "any API"), ("ollama", "Ollama"), ("openai", "OpenAI"), ("responses", "Responses"), ("anthropic", "Anthropic")])
    status = forms.ChoiceField(required=False, choices=[("", "any status"), ("error", "errors only"),
                                                        ("ok", "answered only")])
    last = forms.ChoiceField(required=False, choices=[("", "any time")] + [(k, f"last {k}") for k in LAST])
    since = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    q = forms.CharField(required=False, max_length=200, label="search in bodies")
    before = forms.CharField(required=False)   # keyset cursors (see `cursor`)
    after = forms.CharField(required=False)

    def clean_before(self):
        return parse_cursor(self.cleaned_data["before"])

    def clean_after(self):
        return parse_cursor(self.cleaned_data["after"])

    def apply(self, qs: QuerySet, now: datetime | None = None) -> QuerySet:
        """`qs` narrowed by every filter (not the cursor)."""
        data = self.cleaned_data
        qs = by_key_and_alias(qs, data)
        if data["model"]:
            qs = qs.filter(upstream_model=data["model"])
        if data["api"]:
            qs = qs.filter(api=data["api"])
        if data["status"]:
            qs = qs.filter(status__gte=400) if data["status"] == "error" else qs.filter(status__lt=400)
        if data["last"]:
            qs = qs.filter(started_at__gte=(now or datetime.now(timezone.utc)) - LAST[data["last"]])
        if data["since"]:
            qs = qs.filter(started_at__gte=data["since"])
        if data["until"]:
            qs = qs.filter(started_at__lt=data["until"])
        if data["q"]:
            q = data["q"]
            qs = qs.filter(Q(request_body__icontains=q) | Q(response_text__icontains=q)
                           | Q(upstream_body__icontains=q) | Q(error__icontains=q))
        return qs

    def is_live(self) -> bool:
        """New rows can be shown live on the first page, unless the filters need the database to decide."""
        data = self.cleaned_data
        return not (data["before"] or data["after"] or data["q"] or data["until"])

    def matches(self, row: dict) -> bool:
        """Whether a live row (see `live.live_row`) passes the filters the page shows live."""
        data = self.cleaned_data
        return ((not data["alias"] or row["alias"] == exact(data["alias"]))
                and (not data["model"] or row["upstream_model"] == data["model"])
                and (not data["key"] or row.get("key_name", "") == exact(data["key"]))
                and (not data["api"] or row["api"] == data["api"])
                and (not data["status"] or (row["status"] >= 400) == (data["status"] == "error")))


class UsageFilter(forms.Form):
    """The usage page's filters: UTC days from `start` to `end`, both included (by default the last
    `USAGE_DAYS`, today included), an API key's name and an alias."""

    start = forms.DateField(required=False, label="from", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="to", widget=forms.DateInput(attrs={"type": "date"}))
    key = forms.CharField(required=False, max_length=100)
    alias = forms.CharField(required=False, max_length=200)

    def __init__(self, *args, today: date | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today or datetime.now(timezone.utc).date()

    def clean(self):
        data = super().clean()
        if "start" in data and "end" in data:   # both valid dates or empty
            data["end"] = data["end"] or self.today
            data["start"] = data["start"] or data["end"] - timedelta(days=USAGE_DAYS - 1)
            if data["start"] > data["end"]:
                raise forms.ValidationError("'from' is after 'to'")
        return data

    def apply(self, qs: QuerySet) -> QuerySet:
        data = self.cleaned_data
        since, until = day_range(data["start"], data["end"])
        return by_key_and_alias(qs.filter(started_at__gte=since, started_at__lt=until), data)


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MICROSECOND = timedelta(microseconds=1)


def parse_cursor(value: str) -> tuple[datetime, int] | None:
    if not value:
        return None
    try:
        micros, pk = value.split("_")
        return EPOCH + int(micros) * MICROSECOND, int(pk)
    except (ValueError, OverflowError):
        raise forms.ValidationError("not a page cursor") from None


def cursor(log) -> str:
    """A row's place in the list, URL-safe: "<microseconds since the epoch>_<id>"."""
    return f"{(log.started_at - EPOCH) // MICROSECOND}_{log.pk}"


def page(qs: QuerySet, before=None, after=None) -> tuple[list, str | None, str | None]:
    """One page newest first by (started_at, id): (rows, cursor for older, cursor for newer).

    Keyset pagination: each page is an index range scan, however deep; no COUNT(*), no OFFSET.
    """
    if after:
        at, pk = after
        rows = list(qs.filter(Q(started_at__gt=at) | Q(started_at=at, id__gt=pk))
                    .order_by("started_at", "id")[:PAGE_SIZE + 1])
        more_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        return rows, cursor(rows[-1]) if rows else None, cursor(rows[0]) if rows and more_newer else None
    if before:
        at, pk = before
        qs = qs.filter(Q(started_at__lt=at) | Q(started_at=at, id__lt=pk))
    rows = list(qs.order_by("-started_at", "-id")[:PAGE_SIZE + 1])
    more_older = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, cursor(rows[-1]) if rows and more_older else None, cursor(rows[0]) if rows and before else None
