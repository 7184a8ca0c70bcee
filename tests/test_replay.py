"""Running logged requests again: what is refused before anything is sent, the comparison table, the links."""
import pytest

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
