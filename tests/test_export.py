"""The request log exported: every dialect as OpenAI chat fine-tuning JSONL, CSV columns, the skipped rows,
`manage.py exportlogs` and the history list's export link."""
import csv
import io
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from django.core.management import call_command

from adminui import export
from adminui.models import RequestLog

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
WEATHER_TOOL = {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                                  "parameters": {"type": "object",
                                                                 "properties": {"city": {"type": "string"}}}}}
# What every dialect's conversation below comes out as (ids aside, where the dialect has none).
EXPECTED = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                          "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
    {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"},
]
ANSWER = {"role": "assistant", "content": "It is 18 C and sunny."}

BODIES = {
    "ollama-chat": ("ollama", "/api/chat", {
        "model": "coder", "tools": [WEATHER_TOOL], "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "call_1", "function": {"name": "weather", "arguments": {"city": "Paris"}}}]},
            {"role": "tool", "tool_name": "weather", "content": "18 C, sunny"}]}),
    "openai-chat": ("openai", "/v1/chat/completions", {
        "model": "coder", "tools": [WEATHER_TOOL], "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}]}),
    "responses": ("responses", "/v1/responses", {
        "model": "coder", "instructions": "Be brief.",
        "tools": [{"type": "function", "name": "weather", "description": "Weather in a city",
                   "parameters": WEATHER_TOOL["function"]["parameters"]}, {"type": "web_search"}],
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
                  {"type": "function_call", "call_id": "call_1", "name": "weather",
                   "arguments": '{"city":"Paris"}'},
                  {"type": "function_call_output", "call_id": "call_1", "output": "18 C, sunny"}]}),
    "anthropic": ("anthropic", "/v1/messages", {
        "model": "coder", "max_tokens": 100, "system": [{"type": "text", "text": "Be brief."}],
        "tools": [{"name": "weather", "description": "Weather in a city",
                   "input_schema": WEATHER_TOOL["function"]["parameters"]}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "call_1", "name": "weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                          "content": [{"type": "text", "text": "18 C, sunny"}]}]}]}),
}


def fine_tuning_problems(line: dict) -> list[str]:
    """What keeps one example from the OpenAI chat fine-tuning shape (empty when it fits)."""
    problems = []
    if set(line) - {"messages", "tools", "metadata"}:
        problems.append(f"unknown keys {set(line) - {'messages', 'tools', 'metadata'}}")
    messages = line.get("messages")
    if not isinstance(messages, list) or not messages or messages[-1].get("role") != "assistant":
        return problems + ["messages must be a list ending with the assistant's answer"]
    calls_made = set()
    for i, m in enumerate(messages):
        if m.get("role") not in ("system", "user", "assistant", "tool"):
            problems.append(f"messages[{i}].role {m.get('role')!r}")
        if set(m) - {"role", "content", "tool_calls", "tool_call_id"}:
            problems.append(f"messages[{i}] has {set(m)}")
        if "content" not in m and not m.get("tool_calls"):
            problems.append(f"messages[{i}] has neither content nor tool calls")
        if not isinstance(m.get("content", ""), (str, list)):
            problems.append(f"messages[{i}].content is {type(m['content']).__name__}")
        for call in m.get("tool_calls", ()):
            calls_made.add(call["id"])
            if call.get("type") != "function" or not isinstance(call["function"].get("arguments"), str):
                problems.append(f"messages[{i}] tool call {call}")
            else:
                orjson.loads(call["function"]["arguments"])
        if m["role"] == "tool" and m.get("tool_call_id") not in calls_made:
            problems.append(f"messages[{i}] answers no earlier tool call")
    for t in line.get("tools", ()):
        if t.get("type") != "function" or not t["function"].get("name"):
            problems.append(f"tool {t}")
    return problems


def row(body, api="ollama", endpoint="/api/chat", **fields) -> dict:
    values = dict(request_id="req1", started_at=NOW, api=api, endpoint=endpoint, alias="coder",
                  upstream_model="qwen2.5-7b-instruct", truncated=False, response_text=ANSWER["content"],
                  tool_calls="", prompt_tokens=12, completion_tokens=7, duration_ms=320.0, ttft_ms=80.0,
                  load_ms=None, tokens_per_second=30.5,
                  request_body=body if isinstance(body, str) else orjson.dumps(body).decode())
    values.update(fields)
    return values


@pytest.mark.parametrize("dialect", list(BODIES))
def test_each_dialect_becomes_one_fine_tuning_conversation_with_tool_calls_and_results(dialect):
    api, endpoint, body = BODIES[dialect]
    line = export.example(row(body, api, endpoint))
    assert fine_tuning_problems(line) == []
    assert line["messages"] == EXPECTED + [ANSWER]
    assert line["tools"] == [WEATHER_TOOL]       # hosted tools (web_search) cannot be trained on: left out
    assert line["metadata"] == {
        "id": "req1", "time": "2026-11-22T12:00:00+00:00", "alias": "coder", "model": "qwen2.5-7b-instruct",
        "dialect": api, "endpoint": endpoint, "tokens": {"prompt": 12, "completion": 7},
        "timings": {"duration_ms": 320.0, "ttft_ms": 80.0, "load_ms": None, "tokens_per_second": 30.5}}


@pytest.mark.parametrize("endpoint,body,prompt", [
    ("/api/generate", {"model": "m", "system": "S", "prompt": "P"},
     [{"role": "system", "content": "S"}, {"role": "user", "content": "P"}]),
    ("/api/generate", {"model": "m", "prompt": "raw P", "raw": True}, [{"role": "user", "content": "raw P"}]),
    ("/v1/completions", {"model": "m", "prompt": ["a", "b"]}, [{"role": "user", "content": "a\nb"}]),
    ("/v1/responses", {"model": "m", "input": "just text"}, [{"role": "user", "content": "just text"}]),
])
def test_generate_and_completion_prompts_become_a_user_message(endpoint, body, prompt):
    line = export.example(row(body, endpoint=endpoint))
    assert line["messages"] == prompt + [ANSWER] and fine_tuning_problems(line) == []


def test_an_answer_with_tool_calls_ends_with_them_as_json_string_arguments():
    logged_calls = orjson.dumps([{"id": "", "function": {"name": "weather", "arguments": {"city": "Oslo"}}}])
    line = export.example(row({"model": "m", "messages": [{"role": "user", "content": "Oslo?"}]},
                              response_text="", tool_calls=logged_calls.decode()))
    assert line["messages"][-1] == {"role": "assistant", "tool_calls": [
        {"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]}
    assert fine_tuning_problems(line) == []


def test_images_stay_as_content_parts():
    png = "iVBORw0KGgoAAAAAAAAAAA=="                 # a PNG's signature: enough for the dialect's sniffing
    body = {"model": "m", "messages": [{"role": "user", "content": "what?", "images": [png]}]}
    [user, _] = export.example(row(body))["messages"]
    assert user["content"][0] == {"type": "text", "text": "what?"}
    assert user["content"][1]["image_url"]["url"] == f"data:image/png;base64,{png}"


@pytest.mark.parametrize("fields,reason", [
    ({"truncated": True}, "truncated"),
    ({"request_body": '{"model": "m", "api_key": "[redacted]", "messages": []}'}, "redacted"),
    ({"response_text": "use Bearer [redacted]"}, "redacted"),
    ({"endpoint": "/api/embed"}, "not a conversation"),
    ({"request_body": ""}, "not a conversation"),
    ({"request_body": '{"model": "m", "messages": [{"role": "user", "content": "x"}'}, "unreadable body"),
    ({"request_body": '{"model": "m", "messages": [{"role": "robot"}]}'}, "unreadable body"),
    ({"response_text": ""}, "no answer"),
    ({"request_body": '{"model": "m", "messages": []}'}, "no answer"),          # a model load
])
def test_rows_that_make_no_faithful_example_are_skipped_with_the_reason(fields, reason):
    with pytest.raises(export.Skip) as skip:
        export.example(row({"model": "m", "messages": [{"role": "user", "content": "x"}]}, **fields))
    assert skip.value.reason == reason


def test_skipped_rows_are_counted_by_reason():
    skipped = {}
    good = row({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    lines = list(export.jsonl_lines([good, {**good, "truncated": True}, {**good, "truncated": True},
                                     {**good, "response_text": "[redacted]"}], skipped))
    assert len(lines) == 1 and lines[0].endswith(b"\n")
    assert export.skipped_summary(skipped) == "3 rows skipped: 1 redacted, 2 truncated"


def test_csv_has_the_history_list_columns():
    values = {name: None for name in export.CSV_FIELDS} | {
        "request_id": "r", "started_at": NOW, "status": 200, "alias": "a,b", "duration_ms": 1.5}
    text = b"".join(export.csv_lines([values])).decode()
    header, line = list(csv.DictReader(io.StringIO(text))), None
    [line] = header
    assert list(line) == list(export.CSV_FIELDS)
    assert (line["request_id"], line["started_at"], line["alias"], line["status"], line["ttft_ms"]) == \
        ("r", "2026-11-22T12:00:00+00:00", "a,b", "200", "")


# --- the command and the web download, on the database --------------------------------------------


def log(n: int, body: dict | None = None, **fields) -> RequestLog:
    body = body or {"model": "coder", "messages": [{"role": "user", "content": f"question {n}"}]}
    values = dict(request_id=f"req{n:05d}", started_at=NOW - timedelta(minutes=n), api="ollama",
                  endpoint="/api/chat", requested_model="coder", alias="coder", upstream_model="qwen",
                  status=200, outcome="ok", duration_ms=100.0, response_text=f"answer {n}",
                  request_body=orjson.dumps(body).decode())
    values.update(fields)
    return RequestLog(**values)


@pytest.fixture
def logged(db):
    RequestLog.objects.bulk_create([
        log(0), log(1, alias="tiny"), log(2, status=500, outcome="error", response_text=""),
        log(3, truncated=True), log(4, response_text="key [redacted]"),
        log(60 * 24 * 3)])                                       # three days ago


def test_exportlogs_writes_jsonl_oldest_first_and_counts_skipped_rows_on_stderr(logged, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    call_command("exportlogs", "--format", "jsonl", "--out", str(out))
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["metadata"]["id"] for line in lines] == ["req04320", "req00001", "req00000"]
    assert all(fine_tuning_problems(line) == [] for line in lines)
    assert capsys.readouterr().err.strip() == "3 rows skipped: 1 no answer, 1 redacted, 1 truncated"


def test_exportlogs_filters_by_since_alias_and_status(logged, capsys, monkeypatch):
    monkeypatch.setattr("adminui.management.commands.exportlogs.datetime",
                        type("FrozenDatetime", (datetime,), {"now": staticmethod(lambda tz=None: NOW)}))
    call_command("exportlogs", "--format", "csv", "--since", "1d", "--alias", "coder", "--status", "ok")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["request_id"] for r in rows] == ["req00004", "req00003", "req00000"]
    call_command("exportlogs", "--format", "csv", "--status", "error")
    assert [r["request_id"] for r in csv.DictReader(io.StringIO(capsys.readouterr().out))] == ["req00002"]


def test_exportlogs_refuses_a_bad_duration(logged):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="not a duration"):
        call_command("exportlogs", "--since", "lastweek")


@pytest.mark.anyio
@pytest.mark.django_db(transaction=True)
async def test_the_history_export_downloads_the_lists_filtered_rows_with_the_skipped_count(async_client):
    from asgiref.sync import sync_to_async
    from django.contrib.auth.models import User

    await sync_to_async(lambda: [RequestLog.objects.bulk_create(
        [log(0), log(1, alias="tiny"), log(3, truncated=True), log(4, response_text="[redacted]")]),
        User.objects.create_superuser("admin", "a@example.com", "pw")])()
    await async_client.aforce_login(await User.objects.aget(username="admin"))
    response = await async_client.get("/history/export/", {"format": "jsonl", "alias": "coder"})
    assert response.status_code == 200 and response["Content-Type"] == "application/jsonl"
    assert response["X-Export-Skipped"] == "truncated=1, redacted=1"
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert [orjson.loads(line)["metadata"]["id"] for line in body.splitlines()] == ["req00000"]
    response = await async_client.get("/history/export/", {"format": "csv", "alias": "tiny"})
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    assert [r["request_id"] for r in csv.DictReader(io.StringIO(text))] == ["req00001"]
    assert (await async_client.get("/history/export/", {"format": "xml"})).status_code == 400


def test_the_history_list_links_to_the_export_with_its_filters(admin_client):
    html = admin_client.get("/history/", {"alias": "coder", "status": "ok"}).content.decode()
    assert 'href="/history/export/?alias=coder&amp;status=ok&amp;format=jsonl"' in html
    assert 'href="/history/export/?alias=coder&amp;status=ok&amp;format=csv"' in html

