"""The usage page (/history/usage/): its numbers per UTC day and key × alias, the percentiles, the
filters, the chart, the CSV, who may see it, and how many queries it takes."""
import csv
import io
from datetime import date, datetime, timedelta, timezone

import pytest

from adminui import usage
from adminui.filters import UsageFilter
from adminui.models import RequestLog

pytestmark = pytest.mark.django_db
DAY = date(2026, 11, 21)
NOON = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
ON_THE_DAY = {"start": "2026-11-21", "end": "2026-11-21"}
_ids = iter(range(10**9))


def log(**fields) -> RequestLog:
    values = dict(request_id=f"req{next(_ids):08d}", started_at=NOON, api="openai",
                  endpoint="/v1/chat/completions", key_name="ann", requested_model="coder", alias="coder",
                  upstream_model="qwen2.5-7b-instruct", status=200, outcome="ok", duration_ms=900.0,
                  ttft_ms=100.0, prompt_tokens=10, completion_tokens=5, tokens_per_second=40.0)
    values.update(fields)
    return RequestLog(**values)


def approx(value):
    return None if value is None else pytest.approx(value)


def seed(*rows: RequestLog):
    RequestLog.objects.bulk_create(rows)


def usage_rows(admin_client, **params) -> dict[tuple, usage.Usage]:
    response = admin_client.get("/history/usage/", params)
    assert response.status_code == 200
    return {(r.day, r.key_name, r.alias): r for r in response.context["report"].rows}


def csv_rows(admin_client, **params) -> list[list[str]]:
    response = admin_client.get("/history/usage/", {**params, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode())))


# --- the percentiles, pure -----------------------------------------------------------------------

@pytest.mark.parametrize("values, fraction, expected", [
    ([], 0.5, None),
    ([7.0], 0.5, 7.0),
    ([7.0], 0.95, 7.0),
    ([1.0, 2.0, 3.0], 0.5, 2.0),
    ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),          # an even count: the mean of the middle two
    ([10.0, 20.0], 0.95, 19.5),
    ([float(n) for n in range(1, 101)], 0.95, 95.05),
    ([float(n) for n in range(1, 21)], 0.95, 19.05),
    ([5.0, 5.0, 5.0, 900.0], 0.5, 5.0),
])
def test_a_percentile_is_interpolated_between_the_two_closest_ranks(values, fraction, expected):
    assert usage.percentile(values, fraction) == approx(expected)


@pytest.mark.parametrize("number, text", [(0, "0"), (999, "999"), (1500, "1.5k"), (8_289_717, "8.3M"),
                                          (2_000_000_000, "2G")])
def test_the_chart_axis_shows_compact_counts(number, text):
    assert usage.compact(number) == text


# --- the rows ------------------------------------------------------------------------------------

@pytest.mark.parametrize("ttfts, speeds, statuses, expected", [
    ([100.0], [50.0], [200], (1, 0, 100.0, 100.0, 50.0)),
    ([100.0, 200.0, 300.0, 400.0], [10.0, 20.0, 30.0, 40.0], [200, 200, 404, 502], (4, 2, 250.0, 385.0, 25.0)),
    ([300.0, None, 100.0], [0.0, None, 40.0], [200, 499, 200], (3, 1, 200.0, 290.0, 40.0)),  # no value: left out
    ([None, None], [None, None], [500, 503], (2, 2, None, None, None)),
    ([float(n) for n in range(20, 0, -1)], [1.0] * 20, [200] * 19 + [400], (20, 1, 10.5, 19.05, 1.0)),
])
def test_a_row_counts_requests_errors_and_tokens_and_takes_its_percentiles(admin_client, ttfts, speeds,
                                                                            statuses, expected):
    seed(*(log(ttft_ms=t, tokens_per_second=s, status=code, completion_tokens=None if t is None else 5)
           for t, s, code in zip(ttfts, speeds, statuses)),
         log(key_name="bob", ttft_ms=9999.0, tokens_per_second=1.0, status=500))  # another group, kept apart
    rows = usage_rows(admin_client, **ON_THE_DAY)
    row = rows[DAY, "ann", "coder"]
    requests, errors, median, p95, tps = expected
    assert (row.requests, row.errors) == (requests, errors)
    assert (row.ttft_median, row.ttft_p95, row.tps_median) == (approx(median), approx(p95), approx(tps))
    assert (row.prompt_tokens, row.completion_tokens) == (10 * requests, 5 * sum(t is not None for t in ttfts))
    assert rows[DAY, "bob", "coder"].requests == 1


def test_rows_are_per_day_key_and_alias_newest_day_first_with_totals_per_key(admin_client):
    seed(log(), log(), log(alias="tiny"), log(key_name="bob", prompt_tokens=1000),
         log(key_name="", alias="", requested_model="mistral-7b"), log(key_name="operator"),
         log(started_at=NOON - timedelta(days=1), completion_tokens=50))
    response = admin_client.get("/history/usage/", {"start": "2026-11-20", "end": "2026-11-21"})
    report = response.context["report"]
    assert [(r.day.day, r.key_label, r.alias_label, r.requests) for r in report.rows] == [
        (21, "(no key)", "(no alias)", 1), (21, "ann", "coder", 2), (21, "ann", "tiny", 1),
        (21, "bob", "coder", 1), (21, "operator", "coder", 1), (20, "ann", "coder", 1)]
    assert [(u.key_label, u.requests, u.prompt_tokens, u.completion_tokens) for u in report.per_key] == [
        ("ann", 4, 40, 65), ("(no key)", 1, 10, 5), ("bob", 1, 1000, 5), ("operator", 1, 10, 5)]
    assert (report.total.requests, report.total.tokens) == (7, 1060 + 80)
    assert report.total.ttft_median == 100.0


@pytest.mark.parametrize("time_zone", ["UTC", "Pacific/Kiritimati", "America/Los_Angeles"])
@pytest.mark.parametrize("started_at, day", [
    (datetime(2026, 11, 21, 0, 0, tzinfo=timezone.utc), date(2026, 11, 21)),
    (datetime(2026, 11, 21, 23, 59, 59, 999999, tzinfo=timezone.utc), date(2026, 11, 21)),
    (datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc), date(2026, 11, 22)),
    (datetime(2026, 11, 20, 23, 59, 59, tzinfo=timezone.utc), date(2026, 11, 20)),
])
def test_days_are_utc_days_whatever_the_time_zone(admin_client, settings, time_zone, started_at, day):
    settings.TIME_ZONE = time_zone
    seed(log(started_at=started_at))
    assert list(usage_rows(admin_client, start="2026-11-19", end="2026-11-23")) == [(day, "ann", "coder")]
    on_the_day = usage_rows(admin_client, start="2026-11-21", end="2026-11-21")
    assert list(on_the_day) == ([(day, "ann", "coder")] if day == DAY else [])


# --- the filters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("params, groups", [
    ({}, {("ann", "coder"), ("ann", "tiny"), ("bob", "coder"), ("", "")}),
    ({"key": "ann"}, {("ann", "coder"), ("ann", "tiny")}),
    ({"alias": "coder"}, {("ann", "coder"), ("bob", "coder")}),
    ({"key": "bob", "alias": "coder"}, {("bob", "coder")}),
    ({"key": "nobody"}, set()),
])
def test_the_filters_narrow_the_rows(admin_client, params, groups):
    seed(log(), log(alias="tiny"), log(key_name="bob"), log(key_name="", alias=""),
         log(started_at=NOON + timedelta(days=2)))  # after the range
    rows = usage_rows(admin_client, **ON_THE_DAY, **params)
    assert {(key_name, alias) for _, key_name, alias in rows} == groups


@pytest.mark.parametrize("data, start, end", [
    ({}, date(2026, 10, 24), date(2026, 11, 22)),                 # the last 30 days, today included
    ({"end": "2026-11-10"}, date(2026, 10, 12), date(2026, 11, 10)),
    ({"start": "2026-11-01"}, date(2026, 11, 1), date(2026, 11, 22)),
    ({"start": "2026-11-05", "end": "2026-11-05"}, date(2026, 11, 5), date(2026, 11, 5)),
])
def test_the_days_default_to_the_last_30_up_to_today(data, start, end):
    form = UsageFilter(data, today=date(2026, 11, 22))
    assert form.is_valid(), form.errors
    assert (form.cleaned_data["start"], form.cleaned_data["end"]) == (start, end)


def test_the_default_range_is_the_last_30_utc_days(admin_client):
    now = datetime.now(timezone.utc)
    seed(log(started_at=now), log(started_at=now - timedelta(days=29)), log(started_at=now - timedelta(days=31)))
    assert sum(r.requests for r in usage_rows(admin_client).values()) == 2


@pytest.mark.parametrize("params, message", [
    ({"start": "2026-11-22", "end": "2026-11-21"}, "&#x27;from&#x27; is after &#x27;to&#x27;"),
    ({"start": "yesterday"}, "start: Enter a valid date."),
])
def test_a_bad_filter_is_a_400_naming_the_problem(admin_client, params, message):
    response = admin_client.get("/history/usage/", params)
    assert response.status_code == 400 and message in response.content.decode()
    assert admin_client.get("/history/usage/", {**params, "format": "csv"}).status_code == 400


def test_an_unknown_format_is_a_400(admin_client):
    assert admin_client.get("/history/usage/", {"format": "xlsx"}).status_code == 400


def test_an_empty_range_says_so_and_its_csv_is_the_header_alone(admin_client):
    seed(log(started_at=NOON - timedelta(days=5)))
    response = admin_client.get("/history/usage/", ON_THE_DAY)
    assert response.context["report"].rows == [] and "No requests in these days." in response.content.decode()
    assert csv_rows(admin_client, **ON_THE_DAY) == [list(usage.CSV_FIELDS)]


# --- the page and the CSV ------------------------------------------------------------------------

def test_the_page_shows_the_rows_the_chart_and_links_to_the_history_of_each_row(admin_client):
    seed(log(), log(ttft_ms=300.0), log(key_name="", alias="", requested_model="mistral-7b"),
         log(key_name="bob", started_at=NOON - timedelta(days=1)))
    html = admin_client.get("/history/usage/", {"start": "2026-11-20", "end": "2026-11-21"}).content.decode()
    assert 'data-day="2026-11-21" data-key="ann" data-alias="coder"' in html
    assert "(no key)" in html and "(no alias)" in html and "200 ms" in html  # the median of 100 and 300
    assert '<svg class="chart" id="usage-chart"' in html
    assert "<title>2026-11-21 · ann: 30 tokens, 2 requests</title>" in html
    link = "/history/?since=2026-11-21T00%3A00&amp;until=2026-11-22T00%3A00&amp;key=ann&amp;alias=coder"
    assert link in html
    listed = admin_client.get(link.replace("&amp;", "&")).content.decode()
    assert listed.count("data-request-id=") == 2       # exactly that row's requests
    assert 'href="/history/usage/"' in admin_client.get("/history/").content.decode()  # the list links here
    # the row of the requests without a key or an alias links to exactly them
    nobody = ("/history/?since=2026-11-21T00%3A00&amp;until=2026-11-22T00%3A00&amp;key=%28none%29"
              "&amp;alias=%28none%29")
    assert nobody in html
    listed = admin_client.get(nobody.replace("&amp;", "&")).content.decode()
    assert listed.count("data-request-id=") == 1 and "mistral-7b" in listed


@pytest.mark.parametrize("key, alias, expected", [
    ("(none)", "", ["none-1"]), ("", "(none)", ["none-1", "ann-2"]), ("ann", "(none)", ["ann-2"]),
    ("ann", "", ["ann-1", "ann-2"]), ("(none)", "coder", []),
])
def test_the_history_filters_take_none_for_requests_without_a_key_or_an_alias(key, alias, expected):
    from adminui.filters import HistoryFilter, UsageFilter
    from adminui.models import RequestLog

    seed(log(request_id="ann-1"), log(request_id="ann-2", alias=""),
         log(request_id="none-1", key_name="", alias=""))
    form = HistoryFilter({"key": key, "alias": alias})
    assert form.is_valid()
    found = sorted(form.apply(RequestLog.objects.all()).values_list("request_id", flat=True))
    assert found == sorted(expected)
    live = [row for row in RequestLog.objects.values("request_id", "key_name", "alias", "upstream_model", "api",
                                                     "status") if form.matches(row)]
    assert sorted(row["request_id"] for row in live) == sorted(expected)  # the live rows agree
    usage = UsageFilter({"key": key, "alias": alias, "start": "2026-11-01", "end": "2026-11-30"})
    assert usage.is_valid() and sorted(usage.apply(RequestLog.objects.all()).values_list(
        "request_id", flat=True)) == sorted(expected)


def test_the_key_menu_offers_the_logged_keys_and_the_existing_ones(admin_client):
    from routing.models import ApiKey

    ApiKey(name="carol", prefix="lmp_12345678", key_hash="0" * 64).save()
    seed(log(key_name="bob"), log(key_name=""))
    keys = admin_client.get("/history/usage/").context["keys"]
    assert keys == ["bob", "carol"]
    chosen = admin_client.get("/history/usage/", {"key": "(none)"})
    assert chosen.context["keys"] == ["bob", "carol"]  # "(none)" is the menu's own "(no key)" entry, once
    assert chosen.content.decode().count('<option value="(none)" selected>(no key)</option>') == 1


def test_the_csv_has_the_same_rows_unformatted(admin_client):
    seed(*(log(prompt_tokens=1500, ttft_ms=t) for t in (100.0, 200.0, 300.5)),
         log(key_name="", alias="", status=502, ttft_ms=None, tokens_per_second=None, prompt_tokens=None,
             completion_tokens=None))
    response = admin_client.get("/history/usage/", {**ON_THE_DAY, "format": "csv"})
    assert response["Content-Disposition"] == 'attachment; filename="usage-2026-11-21-2026-11-21.csv"'
    assert csv_rows(admin_client, **ON_THE_DAY) == [
        ["day", "key", "alias", "requests", "errors", "prompt_tokens", "completion_tokens", "ttft_median_ms",
         "ttft_p95_ms", "tokens_per_second_median"],
        ["2026-11-21", "", "", "1", "1", "0", "0", "", "", ""],
        ["2026-11-21", "ann", "coder", "3", "0", "4500", "15", "200.0", "290.45", "40.0"]]
    assert csv_rows(admin_client, **ON_THE_DAY, key="ann")[1:] == csv_rows(admin_client, **ON_THE_DAY)[2:]


@pytest.mark.parametrize("groups", [1, 120])
def test_the_queries_are_bounded_whatever_the_rows(admin_client, django_assert_max_num_queries, groups):
    seed(*(log(started_at=NOON - timedelta(days=n % 30), key_name=f"key{n % 4}", alias=f"alias{n % 5}")
           for n in range(groups * 10)))
    # session, user, the alias and key menus (two), the keys' names, the sums, the timings
    with django_assert_max_num_queries(7):
        response = admin_client.get("/history/usage/", {"start": "2026-10-01", "end": "2026-11-21"})
    assert sum(r.requests for r in response.context["report"].rows) == groups * 10
    with django_assert_max_num_queries(4):  # the CSV needs no menus
        admin_client.get("/history/usage/", {"start": "2026-10-01", "end": "2026-11-21", "format": "csv"})


# --- who may see it ------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [{}, {"format": "csv"}])
def test_anonymous_and_non_staff_users_are_sent_to_the_login(client, django_user_model, params):
    seed(log())
    response = client.get("/history/usage/", params)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(django_user_model.objects.create_user("visitor", password="pw-visitor-1234"))
    response = client.get("/history/usage/", params)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("params", [{}, {"format": "csv"}])
def test_staff_without_the_log_permission_are_refused(client, django_user_model, params):
    from django.contrib.auth.models import Permission

    seed(log(key_name="secret-person"))
    helper = django_user_model.objects.create_user("helper", password="pw-helper-1234", is_staff=True)
    client.force_login(helper)
    response = client.get("/history/usage/", params)
    assert response.status_code == 403 and b"secret-person" not in response.content
    helper.user_permissions.add(Permission.objects.get(codename="view_requestlog"))
    assert client.get("/history/usage/", params).status_code == 200
