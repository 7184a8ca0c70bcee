"""The request-history pages: list (filters, keyset pages, live rows), detail, overview, usage. They show
every prompt, so they need what the admin's request-log pages need: a staff login (through the admin's
login page) and the `adminui.view_requestlog` permission (a staff user without it gets a 403)."""
from __future__ import annotations

from itertools import islice
from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.db import connection
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render

from routing.models import ApiKey

from . import compare, conversation, export, overview, usage
from .filters import HistoryFilter, UsageFilter, page
from .models import RequestLog

BODY_FIELDS = ("request_body", "upstream_body", "response_text", "thinking", "tool_calls")
PERMISSION = "adminui.view_requestlog"


def history_reader(view):
    """Staff (else the admin's login page), with the request log's view permission (else 403)."""
    return staff_member_required(permission_required(PERMISSION, raise_exception=True)(view))


@history_reader
def history(request: HttpRequest):
    """Newest requests first, filtered; new ones arrive over the WebSocket when the page is live."""
    form = HistoryFilter(request.GET)
    rows, older, newer, live = [], None, None, False
    if form.is_valid():
        qs = form.apply(RequestLog.objects.defer(*BODY_FIELDS))
        rows, older, newer = page(qs, form.cleaned_data["before"], form.cleaned_data["after"])
        live = form.is_live()
    status = 200 if form.is_valid() else 400
    return render(request, "adminui/history.html", {
        "nav": "list", "form": form, "rows": rows, "older": older, "newer": newer, "live": live,
        "query": _query_without_cursor(request), "aliases": _distinct("alias"),
        "models": _distinct("upstream_model"),
    }, status=status)


def _query_without_cursor(request: HttpRequest) -> str:
    params = request.GET.copy()
    for key in ("before", "after"):
        params.pop(key, None)
    return params.urlencode()


def _distinct(field: str, limit: int = 100) -> list[str]:
    """Values for the filter suggestions. A loose index scan (one index seek per distinct value) written
    as a recursive CTE, because SELECT DISTINCT would read the whole index: 30 ms at 100k rows."""
    table, column = RequestLog._meta.db_table, RequestLog._meta.get_field(field).column
    sql = (f"WITH RECURSIVE v(x) AS (SELECT MIN({column}) FROM {table} WHERE {column} > '' "
           f"UNION ALL SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > v.x) FROM v "
           f"WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL LIMIT %s")
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [row[0] for row in cursor.fetchall()]


@history_reader
def detail(request: HttpRequest, request_id: str):
    log = get_object_or_404(RequestLog, request_id=request_id)
    request_body = conversation.parse_json(log.request_body)
    # The conversation as LM Studio saw it (alias system prompt included), else as the client sent it.
    messages = (conversation.conversation(conversation.parse_json(log.upstream_body))
                or conversation.conversation(request_body))
    return render(request, "adminui/detail.html", {
        "log": log,
        "load": conversation.parse_json(log.load) if log.load else None,
        "conversation": messages,
        "answer": conversation.answer(log.response_text, log.thinking, log.tool_calls),
        "curl": conversation.curl_command(request.build_absolute_uri("/"), log.endpoint, log.request_body),
        "body_cut": bool(log.request_body) and request_body is None,
        "replays": RequestLog.objects.filter(replay_of=log.request_id).defer(*BODY_FIELDS).order_by("started_at"),
        "run_again_on": compare.choices() if request.user.has_perm(compare.REPLAY_PERMISSION) else None,
    })


@history_reader
def export_view(request: HttpRequest):
    """The list's rows under its current filters, as `manage.py exportlogs` writes them (`format`:
    jsonl or csv), streamed. The JSONL rows left out for a truncated or redacted body are counted in the
    `X-Export-Skipped` header, which goes out before the body: so it is counted first, in the database."""
    fmt = request.GET.get("format", "jsonl")
    form = HistoryFilter(request.GET)
    if fmt not in export.FORMATS or not form.is_valid():
        return HttpResponseBadRequest("format must be jsonl or csv, with the history list's filters")
    qs = form.apply(RequestLog.objects.all())
    _, lines, content_type = export.FORMATS[fmt]
    response = StreamingHttpResponse(_in_batches(lines(export.rows(qs, fmt), {})), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="requests.{fmt}"'
    if fmt == "jsonl":
        response["X-Export-Skipped"] = _skipped_header(qs)
    return response


def _skipped_header(qs) -> str:
    """"truncated=N, redacted=M": what the JSONL leaves out because the history cannot give it back."""
    qs = qs.filter(endpoint__in=list(export.CONVERSATIONS))
    redacted = Q(request_body__contains=export.REDACTED) | Q(response_text__contains=export.REDACTED) \
        | Q(tool_calls__contains=export.REDACTED)
    return (f"{export.TRUNCATED}={qs.filter(truncated=True).count()}, "
            f"{export.REDACTED_ROW}={qs.filter(redacted, truncated=False).count()}")


async def _in_batches(lines, size: int = 500):
    """A synchronous line iterator (a database cursor) served to the ASGI server: each batch read in
    the request's thread, so memory stays one batch however long the export."""
    take = sync_to_async(lambda: b"".join(islice(lines, size)))
    while batch := await take():
        yield batch


@history_reader
def overview_page(request: HttpRequest):
    window = request.GET.get("window", "1h")
    if window not in overview.WINDOWS:
        window = "1h"
    stats, buckets = overview.collect(window)
    rows = list(zip(stats, overview.alias_bars(stats, "median_ms"), overview.alias_bars(stats, "median_tps")))
    return render(request, "adminui/overview.html", {
        "nav": "overview", "window": window, "windows": list(overview.WINDOWS), "rows": rows,
        "total": sum(s.requests for s in stats), "errors": sum(s.errors for s in stats),
        "chart": overview.request_chart(buckets, "%H:%M"),
    })


@history_reader
def usage_page(request: HttpRequest):
    """Usage per UTC day and per key × alias (see `usage`); `?format=csv` downloads the same rows."""
    form, fmt = UsageFilter(request.GET), request.GET.get("format", "html")
    if fmt not in ("html", "csv") or (fmt == "csv" and not form.is_valid()):
        return HttpResponseBadRequest("format must be csv, with the usage page's filters (start, end, key, alias)")
    if fmt == "csv":
        return _usage_csv(form)
    context = {"nav": "usage", "form": form, "aliases": _distinct("alias"),
               "keys": sorted({*_distinct("key_name"), *ApiKey.objects.values_list("name", flat=True),
                               form.data.get("key", "")} - {"", usage.NONE})}
    if form.is_valid():
        context.update(_usage_tables(form))
    return render(request, "adminui/usage.html", context, status=200 if form.is_valid() else 400)


def _usage_tables(form: UsageFilter) -> dict:
    """The page's tables and chart; each row with the history list's query for its requests."""
    data = form.cleaned_data
    start, end = data["start"], data["end"]
    found = usage.report(form.apply(RequestLog.objects.all()))

    def linked(rows: list[usage.Usage]) -> list[tuple[usage.Usage, str]]:
        return [(row, urlencode(usage.history_query(row, start, end))) for row in rows]

    filters = {name: data[name] for name in ("start", "end", "key", "alias") if data[name]}
    return {"report": found, "start": start, "end": end, "csv_query": urlencode({**filters, "format": "csv"}),
            "rows": linked(found.rows), "per_key": linked(found.per_key),
            "chart": usage.chart(found.rows, [u.key_name for u in found.per_key], start, end)}


def _usage_csv(form: UsageFilter) -> HttpResponse:
    data = form.cleaned_data
    rows = usage.report(form.apply(RequestLog.objects.all())).rows
    response = HttpResponse("".join(usage.csv_lines(rows)), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="usage-{data["start"]}-{data["end"]}.csv"'
    return response
