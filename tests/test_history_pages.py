"""The history pages (list, filters, keyset pages, detail, overview), the live consumer and the admin."""
import asyncio
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from adminui.consumers import HistoryConsumer
from adminui.live import GROUP, MESSAGE_TYPE, live_row
from adminui.models import RequestLog

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def log(n: int, **fields) -> RequestLog:
    values = dict(request_id=f"req{n:05d}", started_at=NOW - timedelta(seconds=n), api="ollama",
                  endpoint="/api/chat", requested_model="coder", alias="coder",
                  upstream_model="qwen2.5-7b-instruct", status=200, outcome="ok", duration_ms=120.0,
                  ttft_ms=40.0, prompt_tokens=5, completion_tokens=7, tokens_per_second=50.0)
    values.update(fields)
    return RequestLog(**values)


def ids_on(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('data-request-id="')[1:]]


def test_history_needs_a_staff_login_through_the_admin(client):
    response = client.get("/history/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_the_list_is_newest_first_with_the_columns(admin_client):
    RequestLog.objects.bulk_create([log(2), log(1, status=502, outcome="error", error="boom"), log(0)])
    html = admin_client.get("/history/").content.decode()
    assert ids_on(html) == ["req00000", "req00001", "req00002"]
    assert "<b>coder</b> → qwen2.5-7b-instruct" in html and "120 ms" in html and "5 + 7" in html
    assert 'class="badge s5xx">502' in html


def test_keyset_pages_walk_every_row_once_in_both_directions(admin_client):
    RequestLog.objects.bulk_create([log(n) for n in range(120)] + [log(200 + n, started_at=NOW) for n in range(3)])
    seen, pages, url = [], [], "/history/"
    while url:
        response = admin_client.get(url)
        ids = ids_on(response.content.decode())
        pages.append(ids)
        seen += ids
        older = response.context["older"]
        url = f"/history/?before={older}" if older else None
    assert [len(p) for p in pages] == [50, 50, 23]
    assert len(set(seen)) == 123
    back = admin_client.get("/history/", {"after": response.context["newer"]})
    assert ids_on(back.content.decode()) == pages[1]


def test_filters_narrow_the_list(admin_client):
    RequestLog.objects.bulk_create([
        log(0), log(1, alias="tiny", upstream_model="llama"), log(2, status=404, outcome="error"),
        log(3, api="openai", endpoint="/v1/chat/completions"), log(4, request_body='{"prompt": "needle"}'),
        log(5, started_at=NOW - timedelta(days=3))])

    def ids(**params):
        return ids_on(admin_client.get("/history/", params).content.decode())

    assert ids(alias="tiny") == ["req00001"]
    assert ids(model="llama") == ["req00001"]
    assert ids(status="error") == ["req00002"]
    assert ids(api="openai") == ["req00003"]
    assert ids(q="needle") == ["req00004"]
    assert ids(until="2026-11-20T00:00") == ["req00005"]
    assert ids(since="2026-11-21T00:00", alias="coder", api="ollama") == ["req00000", "req00002", "req00004"]


def test_a_bad_filter_is_a_400_naming_the_field(admin_client):
    response = admin_client.get("/history/", {"before": "garbage", "since": "yesterday"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "before: not a page cursor" in html and "since: Enter a valid date/time." in html


def test_the_detail_page_shows_the_conversation_parameters_answer_and_curl(admin_client):
    body = {"model": "coder", "messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                            "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"}]}
    log(0, request_body=orjson.dumps(body).decode(), upstream_body='{"temperature": 0.2, "ttl": 1800}',
        response_text="It is sunny.", thinking="Let me think.", error="").save()
    html = admin_client.get("/history/req00000/").content.decode()
    for text in ("Be terse.", "weather in Paris?", "get_weather", "&quot;city&quot;: &quot;Paris&quot;", "sunny",
                 "It is sunny.", "Let me think.", "&quot;temperature&quot;: 0.2", "curl http://testserver/api/chat"):
        assert text in html
    assert admin_client.get("/history/nope/").status_code == 404


def test_the_overview_counts_per_alias_and_draws_an_svg_chart(admin_client):
    now = datetime.now(timezone.utc)
    RequestLog.objects.bulk_create([
        log(0, started_at=now - timedelta(minutes=1), duration_ms=100.0),
        log(1, started_at=now - timedelta(minutes=2), duration_ms=300.0),
        log(2, started_at=now - timedelta(minutes=3), status=500, outcome="error"),
        log(3, started_at=now - timedelta(minutes=4), alias="", requested_model="llama", upstream_model="llama"),
        log(4, started_at=now - timedelta(hours=3))])
    response = admin_client.get("/history/overview/")
    stats = {row[0].name: row[0] for row in response.context["rows"]}
    assert (stats["coder"].requests, stats["coder"].errors, stats["coder"].median_ms) == (3, 1, 200.0)
    assert stats["llama"].requests == 1
    assert response.context["total"] == 4
    assert "<svg" in response.content.decode() and 'class="bad"' in response.content.decode()
    assert admin_client.get("/history/overview/", {"window": "24h"}).context["total"] == 5


def test_the_admin_shows_the_log_read_only_and_links_to_history(admin_client):
    log(0).save()
    pk = RequestLog.objects.get().pk
    assert admin_client.get("/admin/adminui/requestlog/").status_code == 200
    change = admin_client.get(f"/admin/adminui/requestlog/{pk}/change/").content.decode()
    assert 'name="_save"' not in change  # read-only
    assert admin_client.get("/admin/adminui/requestlog/add/").status_code == 403
    assert 'href="/history/"' in admin_client.get("/admin/").content.decode()
    assert 'href="/admin/"' in admin_client.get("/history/").content.decode()


# --- the live consumer -------------------------------------------------------------------------


SAME_ORIGIN = [(b"host", b"localhost:11434"), (b"origin", b"http://localhost:11434")]


async def connect_as(user, query: str = "", headers=SAME_ORIGIN):
    communicator = WebsocketCommunicator(HistoryConsumer.as_asgi(), f"/ws/history/?{query}", headers=headers)
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    return communicator, connected


@pytest.mark.anyio
async def test_the_websocket_rejects_anonymous_users():
    communicator, connected = await connect_as(AnonymousUser())
    assert not connected


@pytest.fixture
def staff_without_permission(django_user_model):
    return django_user_model.objects.create_user("helper", password="pw-helper-1234", is_staff=True)


@pytest.mark.parametrize("path", ["/history/", "/history/overview/", "/history/req00001/"])
def test_a_staff_user_without_the_log_permission_sees_no_history(client, staff_without_permission, path):
    RequestLog.objects.bulk_create([log(1, request_body='{"secret prompt": 1}')])
    client.force_login(staff_without_permission)
    response = client.get(path)
    assert response.status_code == 403
    assert b"secret prompt" not in response.content


def test_the_log_permission_alone_opens_the_history(client, staff_without_permission):
    from django.contrib.auth.models import Permission

    RequestLog.objects.bulk_create([log(1)])
    staff_without_permission.user_permissions.add(Permission.objects.get(codename="view_requestlog"))
    client.force_login(staff_without_permission)
    assert client.get("/history/").status_code == 200
    assert client.get("/history/req00001/").status_code == 200


@pytest.mark.anyio
async def test_the_websocket_refuses_staff_without_the_log_permission(staff_without_permission):
    communicator, connected = await connect_as(staff_without_permission)
    assert not connected


@pytest.mark.anyio
@pytest.mark.parametrize("origin", [b"http://localhost:8080", b"https://localhost:11434", b"http://evil.example",
                                    b"http://localhost", b"null", None])
async def test_the_websocket_refuses_any_other_origin_even_on_the_same_host(admin_user, origin):
    headers = [(b"host", b"localhost:11434")] + ([(b"origin", origin)] if origin else [])
    communicator, connected = await connect_as(admin_user, headers=headers)
    assert not connected


@pytest.mark.anyio
async def test_the_websocket_refuses_a_foreign_host_name(admin_user):
    headers = [(b"host", b"rebind.evil.example:11434"), (b"origin", b"http://rebind.evil.example:11434")]
    communicator, connected = await connect_as(admin_user, headers=headers)
    assert not connected


@pytest.mark.anyio
async def test_the_websocket_pushes_new_rows_matching_the_page_filters(admin_user):
    communicator, connected = await connect_as(admin_user, "alias=coder")
    assert connected
    rows = [live_row(_fields(log(1))),
            live_row(_fields(log(2, alias="tiny")))]
    await get_channel_layer().group_send(GROUP, {"type": MESSAGE_TYPE, "rows": rows})
    message = orjson.loads(await communicator.receive_from(timeout=5))
    assert len(message["rows"]) == 1 and 'data-request-id="req00001"' in message["rows"][0]
    await communicator.disconnect()


def _fields(instance: RequestLog) -> dict:
    return {f.name: getattr(instance, f.name) for f in RequestLog._meta.concrete_fields if f.name != "id"}


@pytest.mark.anyio
async def test_rows_are_rendered_and_sent_only_while_a_history_page_listens(admin_user):
    from adminui.live import Broadcaster

    layer, sent = get_channel_layer(), []
    original = layer.group_send

    async def spy(group, message):
        sent.append(message)
        await original(group, message)

    layer.group_send = spy
    try:
        broadcaster = Broadcaster()
        broadcaster.remember_loop()
        broadcaster([_fields(log(1))])
        await asyncio.sleep(0.05)
        assert sent == []                      # nobody listening: nothing rendered, nothing sent
        broadcaster.listeners = 1
        broadcaster([_fields(log(1))])
        await asyncio.sleep(0.05)
        assert len(sent) == 1 and 'data-request-id="req00001"' in sent[0]["rows"][0]["html"]
    finally:
        layer.group_send = original
