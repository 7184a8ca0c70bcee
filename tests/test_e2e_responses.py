"""End to end: the official `openai` client's Responses API on /v1/responses -> the proxy under Daphne ->
the fake LM Studio (chat completions only: the proxy translates both ways, statelessly)."""
import httpx
import openai
import orjson
import pytest

from tests.test_e2e_history import find_log

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}


def upstream(fake) -> dict:
    [body] = [r["json"] for r in fake.requests("/v1/chat/completions")]
    return body


def test_text_in_text_out(openai_client, fake):
    response = openai_client.responses.create(model="coder", input="hello there", instructions="Answer kindly.",
                                              max_output_tokens=64, store=False)
    assert response.status == "completed" and response.model == "coder" and response.id.startswith("resp_")
    assert response.output_text == "Hello from qwen2.5-7b-instruct! You said: hello there"
    [item] = response.output
    assert item.type == "message" and item.role == "assistant" and item.content[0].type == "output_text"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens == 7
    assert response.usage.total_tokens == response.usage.input_tokens + 7
    sent = upstream(fake)
    assert sent["model"] == "qwen2.5-7b-instruct" and sent["max_tokens"] == 64 and sent["temperature"] == 0.2
    assert sent["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "system", "content": "Answer kindly."},
                                {"role": "user", "content": "hello there"}]


def test_a_stream_of_typed_events(openai_client, fake):
    stream = openai_client.responses.create(model="thinker", input="why?", stream=True,
                                            reasoning={"effort": "high", "summary": "auto"})
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.reasoning_summary_text.delta" in kinds and "response.output_text.done" in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from qwen3-4b-thinking! You said: why?"
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "Let me think." and final.usage.output_tokens > 0
    assert upstream(fake)["reasoning_effort"] == "high"


def test_a_function_call_and_its_output(openai_client, fake):
    first = openai_client.responses.create(model="coder", input="weather in Paris?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and orjson.loads(call.arguments) == {"city": "Paris"} and call.call_id
    sent = upstream(fake)
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["parameters"]}}]
    fake.reset()
    second = openai_client.responses.create(model="coder", tools=[WEATHER], input=[
        {"role": "user", "content": "weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == "The tool said: sunny"
    messages = upstream(fake)["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == call.call_id
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


def test_a_streamed_function_call(openai_client, fake):
    events = list(openai_client.responses.create(model="coder", input="weather in Paris?", tools=[WEATHER],
                                                 stream=True))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert orjson.loads(args) == {"city": "Paris"}
    [done] = [e for e in events if e.type == "response.output_item.done"]
    assert done.item.type == "function_call" and done.item.arguments == args


def test_codexs_request_shape(openai_client, fake):
    """Developer items, reasoning with an encrypted-content include, namespaced and hosted tools, the
    fields Codex sends on every turn."""
    openai_client.responses.create(
        model="coder", stream=False, store=False, tool_choice="auto", parallel_tool_calls=True,
        reasoning={"summary": "auto"}, include=["reasoning.encrypted_content"], prompt_cache_key="abc",
        input=[{"type": "message", "id": "m1", "role": "developer", "content": [{"type": "input_text", "text": "D1"}]},
               {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "D2"}]},
               {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
               {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}],
        tools=[WEATHER, {"type": "namespace", "name": "mcp", "description": "x", "tools": []},
               {"type": "web_search", "external_web_access": False}],
        extra_body={"client_metadata": {"turn": "1"}})
    sent = upstream(fake)
    assert sent["messages"][1:] == [{"role": "system", "content": "D1\n\nD2"}, {"role": "user", "content": "say hi"}]
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"] and sent["tool_choice"] == "auto"


def test_json_schema_output_becomes_response_format(openai_client, fake):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    openai_client.responses.create(model="coder", input="x", text={"format": {
        "type": "json_schema", "name": "thing", "schema": schema, "strict": True}})
    assert upstream(fake)["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True}}


def test_max_output_tokens_makes_an_incomplete_response(openai_client, fake):
    response = openai_client.responses.create(model="coder", input="a b c d e", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"


def test_errors_in_openais_shape(openai_client, proxy_server, fake):
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.responses.create(model="nope", input="x", stream=True)
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.responses.create(model="coder", input="x", previous_response_id="resp_1")
    assert "stateless" in raised.value.message
    response = httpx.post(f"{proxy_server.url}/v1/responses", json={"model": "coder"})
    assert response.status_code == 400 and "input" in response.json()["error"]["message"]


def test_a_failure_mid_stream_is_response_failed(openai_client, fake):
    fake.script(tokens=20, cut_after=3)
    kinds = [e.type for e in openai_client.responses.create(model="coder", input="x", stream=True)]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds


def test_the_history_shows_the_exchange(openai_client, proxy_server, fake):
    raw = openai_client.responses.with_raw_response.create(model="coder", input="weather in Paris?", tools=[WEATHER])
    row = find_log(proxy_server, raw.headers["x-request-id"])
    assert (row["api"], row["endpoint"], row["alias"], row["status"]) == ("responses", "/v1/responses", "coder", 200)
    assert "get_weather" in row["tool_calls"] and row["prompt_tokens"] > 0
