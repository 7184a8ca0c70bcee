"""Running logged requests again: what is refused before anything is sent, the comparison table, the links."""
import pytest

from adminui.compare import delta_text
from adminui.models import RequestLog
from adminui.replay import Refused, Run, comparison, replayable_body
from tests.test_export import log


@pytest.mark.parametrize("fields,message", [
    ({"truncated": True}, "cut at LOG_BODY_MAX_BYTES"),
    ({"request_body": '{"model": "m", "api_key": "[redacted]", "messages": []}'}, "secrets were redacted"),
    ({"request_body": ""}, "not logged"),
    ({"endpoint": "/api/embed"}, "cannot be run again"),
])
def test_a_body_the_log_did_not_keep_whole_is_refused(fields, message):
    with pytest.raises(Refused, match=message):
        replayable_body(log(0, **fields))


def test_a_whole_body_is_given_back_as_the_client_sent_it():
    assert replayable_body(log(0)) == {"model": "coder", "messages": [{"role": "user", "content": "question 0"}]}


def test_the_comparison_is_aligned_with_the_answers_first_line_and_tool_names():
    runs = [Run("coder", "a", 200, "ok", "", 81.4, 30.25, 12, 7, 320.0, "Paris.\nMore"),
            Run("tiny", "b", 200, "ok", "", 20.0, None, 12, 1, 90.0, "", [{"function": {"name": "weather"}}]),
            Run("big", "c", 502, "error", "LM Studio: boom", None, None, None, None, 5.0, "")]
    assert comparison(runs).splitlines() == [
        "alias     status   TTFT  tok/s  prompt  completion   total  answer",
        "coder        200  81 ms   30.2      12           7  320 ms  Paris.",
        "tiny         200  20 ms      —      12           1   90 ms  [tools: weather]",
        "big    502 error      —      —       —           —    5 ms  LM Studio: boom",
    ]


def test_the_detail_page_links_a_replay_and_its_original_both_ways(admin_client):
    RequestLog.objects.bulk_create([log(0), log(1, alias="tiny", replay_of="req00000")])
    original = admin_client.get("/history/req00000/").content.decode()
    assert 'href="/history/req00001/">tiny · 200 · 100 ms</a>' in original
    replay = admin_client.get("/history/req00001/").content.decode()
    assert 'class="replay-of" href="/history/req00000/">req00000</a>' in replay


# --- Run again from the browser: the comparison ------------------------------------------------------

@pytest.mark.parametrize("path, chunk, text", [
    ("/api/chat", b'{"message":{"role":"assistant","content":"Hel"},"done":false}\n'
                  b'{"message":{"role":"assistant","content":"lo"},"done":false}\n', "Hello"),
    ("/api/generate", b'{"response":"Hi","done":false}\n{"response":"","done":true}\n', "Hi"),
    ("/v1/chat/completions", b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
                             b'data: {"choices":[{"index":0,"delta":{"content":" you"}}]}\n\ndata: [DONE]\n\n', "Hi you"),
    ("/v1/completions", b'data: {"choices":[{"index":0,"text":"Hi"}]}\n\n', "Hi"),
    ("/v1/messages", b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                     b'"delta":{"type":"text_delta","text":"Hi"}}\n\nevent: ping\ndata: {"type":"ping"}\n\n', "Hi"),
    ("/v1/messages", b'data: {"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":"{"}}\n\n',
     ""),
    ("/v1/responses", b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
                      b'"delta":"Hi"}\n\ndata: {"type":"response.completed","response":{}}\n\n', "Hi"),
    ("/api/chat", b'{"error":"LM Studio went away"}\n', ""),
])
def test_the_answer_text_is_read_from_each_dialects_stream(path, chunk, text):
    assert delta_text(path, chunk) == text


def test_running_again_needs_its_own_permission(client, django_user_model, db):
    from django.contrib.auth.models import Permission

    log(1, request_id="r1").save()
    viewer = django_user_model.objects.create_user("viewer", password="pw-12345-long", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_requestlog"))
    client.force_login(viewer)
    assert client.post("/history/r1/replay/", {"alias": "coder"}).status_code == 403
    assert "Run again on" not in client.get("/history/r1/").content.decode()


def test_a_refused_run_goes_back_to_the_detail_page_saying_why_and_sends_nothing(admin_client, routes_file,
                                                                                 upstream_mock):
    log(2, request_id="r2", truncated=True, request_body='{"model": "coder", "messages": [').save()
    response = admin_client.post("/history/r2/replay/", {"alias": "coder"}, follow=True)
    assert response.redirect_chain[-1][0] == "/history/r2/"
    assert "Not run again: r2: its logged body was cut" in response.content.decode()
    response = admin_client.post("/history/r2/replay/", {"alias": "no-such-alias"}, follow=True)
    assert "Not run again" in response.content.decode()
    assert not upstream_mock.calls


def test_the_replay_form_is_a_csrf_protected_post(routes_file, django_user_model):
    from django.test import Client

    log(3, request_id="r3").save()
    admin = django_user_model.objects.create_superuser("boss", password="pw-12345-long")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin)
    assert client.post("/history/r3/replay/", {"alias": "coder"}).status_code == 403  # no CSRF token
    assert client.get("/history/r3/replay/").status_code == 405
