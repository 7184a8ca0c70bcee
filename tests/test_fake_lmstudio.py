"""Self-test of the fake LM Studio server (tests/fake_lmstudio.py), run as a subprocess."""

import json
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

FAKE = Path(__file__).with_name("fake_lmstudio.py")
CHAT_MODEL = "qwen2.5-7b-instruct"


def start_fake(port=0):
    """Start the fake LM Studio; return (process, base_url) once it prints LISTENING <port>."""
    process = subprocess.Popen(
        [sys.executable, str(FAKE), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, text=True,
    )
    ready, _, _ = select.select([process.stdout], [], [], 10)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("LISTENING "):
        process.kill()
        process.wait()
        process.stdout.close()
        raise RuntimeError(f"fake LM Studio did not start (got {line!r})")
    return process, f"http://127.0.0.1:{int(line.split()[1])}"


def stop_fake(process):
    """SIGTERM the fake and wait; returns its exit code (0 after a graceful shutdown)."""
    process.terminate()
    try:
        return process.wait(timeout=10)
    finally:
        process.stdout.close()


@pytest.fixture(scope="module")
def fake():
    process, base_url = start_fake()
    yield base_url
    assert stop_fake(process) == 0


@pytest.fixture
def client(fake):
    with httpx.Client(base_url=fake, timeout=10) as c:
        c.post("/_fake/reset").raise_for_status()
        yield c


def chat_body(text="hi there", model=CHAT_MODEL, **extra):
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def read_sse(response):
    """Payloads of the `data:` lines of a stream, "[DONE]" kept as a string."""
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_model_lists(client):
    ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert CHAT_MODEL in ids and "text-embedding-nomic-embed-text-v1.5" in ids
    v0 = {m["id"]: m for m in client.get("/api/v0/models").json()["data"]}
    assert v0[CHAT_MODEL]["state"] == "loaded" and v0[CHAT_MODEL]["capabilities"] == ["tool_use"]
    assert v0["qwen2-vl-2b-instruct"]["type"] == "vlm"
    assert client.get(f"/api/v0/models/{CHAT_MODEL}").json()["loaded_context_length"] == 8192
    missing = client.get("/api/v0/models/qwen/qwen3-4b")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    native = {m["key"]: m for m in client.get("/api/v1/models").json()["models"]}
    assert native[CHAT_MODEL]["loaded_instances"][0]["config"]["context_length"] == 8192
    assert native["qwen3-4b-thinking"]["capabilities"]["reasoning"] is True


def test_load_and_unload(client):
    loaded = client.post("/api/v1/models/load", json={"model": "llama-3.2-1b-instruct", "context_length": 2048})
    assert loaded.json()["status"] == "loaded"
    assert client.get("/api/v0/models/llama-3.2-1b-instruct").json()["loaded_context_length"] == 2048
    assert client.post("/api/v1/models/unload", json={"instance_id": "llama-3.2-1b-instruct"}).status_code == 200
    assert client.get("/api/v0/models/llama-3.2-1b-instruct").json()["state"] == "not-loaded"
    assert client.post("/api/v1/models/load", json={"model": "nope"}).status_code == 404


def test_streamed_chat_with_usage(client):
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = read_sse(response)
    assert events[-1] == "[DONE]"
    usage_chunk, finish_chunk, tokens = events[-2], events[-3], events[:-3]
    assert tokens[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello"}
    text = "".join(e["choices"][0]["delta"]["content"] for e in tokens)
    assert text == f"Hello from {CHAT_MODEL}! You said: hi there"
    assert finish_chunk["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 2, "completion_tokens": len(tokens), "total_tokens": 2 + len(tokens)}


def test_non_streamed_chat_jit_loads_and_max_tokens(client):
    model = "llama-3.2-1b-instruct"
    result = client.post("/v1/chat/completions", json=chat_body(model=model, max_tokens=2)).json()
    assert result["choices"][0]["message"]["content"] == "Hello from"
    assert result["choices"][0]["finish_reason"] == "length"
    assert result["usage"]["completion_tokens"] == 2 and "stats" in result
    assert client.get(f"/api/v0/models/{model}").json()["state"] == "loaded"


def test_reasoning_model_streams_reasoning_first(client):
    body = chat_body(model="qwen3-4b-thinking", stream=True)
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        deltas = [e["choices"][0]["delta"] for e in read_sse(response)[:-2]]
    reasoning = "".join(d.get("reasoning", "") for d in deltas)
    assert reasoning == "Let me think." and "reasoning" in deltas[0] and "content" in deltas[-1]


def test_fragmented_tool_call_reassembles(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = chat_body("What is the weather in Paris?", tools=tools, stream=True)
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        events = read_sse(response)
    calls = [c for e in events[:-1] for c in e["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["id"] == "call_abc123" and calls[0]["function"]["name"] == "get_weather"
    assert len(calls) > 2
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments) == {"city": "Paris"}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    follow_up = {"model": CHAT_MODEL, "tools": tools, "messages": body["messages"] + [
        {"role": "tool", "content": "sunny"}]}
    answer = client.post("/v1/chat/completions", json=follow_up).json()
    assert answer["choices"][0]["message"]["content"] == "The tool said: sunny"


def test_errors_and_unexpected_endpoint_quirk(client):
    unknown = client.post("/v1/chat/completions", json=chat_body(model="no-such-model"))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    bad = client.post("/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    quirk = client.get("/nope")
    assert quirk.status_code == 200
    assert quirk.json() == {"error": "Unexpected endpoint or method. (GET /nope)"}
    assert client.get("/v1/chat/completions").json()["error"].startswith("Unexpected endpoint")


def test_script_status_and_jit_off(client):
    client.post("/_fake/script", json={"status": 503, "error": "busy"})
    failed = client.post("/v1/chat/completions", json=chat_body())
    assert failed.status_code == 503 and failed.json() == {"error": {"message": "busy"}}
    client.post("/_fake/script", json={"jit": False})
    refused = client.post("/v1/chat/completions", json=chat_body(model="llama-3.2-1b-instruct"))
    assert refused.status_code == 400 and "not loaded" in refused.json()["error"]["message"]
    assert client.post("/_fake/script", json={"typo": 1}).status_code == 400


def test_completions_and_embeddings(client):
    completion = client.post("/v1/completions", json={"model": CHAT_MODEL, "prompt": "abc"}).json()
    assert completion["choices"][0]["text"] == "Completion for: abc"
    body = {"model": "text-embedding-nomic-embed-text-v1.5", "input": ["a", "b"]}
    first, second = (client.post("/v1/embeddings", json=body).json() for _ in range(2))
    assert first == second and len(first["data"]) == 2 and len(first["data"][0]["embedding"]) == 8
    wrong = client.post("/v1/embeddings", json={**body, "model": CHAT_MODEL})
    assert wrong.status_code == 400


def test_log_probabilities_are_given_when_asked_and_the_same_every_time(client):
    whole = client.post("/v1/chat/completions", json=chat_body(logprobs=True, top_logprobs=2)).json()["choices"][0]
    content = whole["logprobs"]["content"]
    assert "".join(e["token"] for e in content) == whole["message"]["content"]
    first = content[0]
    assert first["bytes"] == list(first["token"].encode()) and -4 < first["logprob"] <= 0
    assert [t["token"] for t in first["top_logprobs"]] == [first["token"], first["token"] + "~1"]
    with client.stream("POST", "/v1/chat/completions", json=chat_body(logprobs=True, top_logprobs=2,
                                                                      stream=True)) as response:
        chunks = [e for e in read_sse(response) if e != "[DONE]"]
    streamed = [c["choices"][0]["logprobs"] for c in chunks if c["choices"] and c["choices"][0]["logprobs"]]
    assert [e for logprobs in streamed for e in logprobs["content"]] == content
    assert client.post("/v1/chat/completions", json=chat_body()).json()["choices"][0]["logprobs"] is None
    legacy = client.post("/v1/completions", json={"model": CHAT_MODEL, "prompt": "abc", "logprobs": 1}).json()
    logprobs = legacy["choices"][0]["logprobs"]
    assert "".join(logprobs["tokens"]) == legacy["choices"][0]["text"] and logprobs["text_offset"][0] == 0
    assert [list(top) for top in logprobs["top_logprobs"]] == [[t] for t in logprobs["tokens"]]


def test_cut_after_ends_stream_without_done(client):
    client.post("/_fake/script", json={"tokens": 50, "cut_after": 3})
    events = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response:
            for line in response.iter_lines():
                events.append(line)
    data = [line for line in events if line.startswith("data: ")]
    assert len(data) == 3 and "data: [DONE]" not in events


def test_requests_are_recorded(client):
    client.post("/v1/chat/completions", json=chat_body(), headers={"X-Trace": "abc"})
    client.get("/v1/models")
    recorded = client.get("/_fake/requests").json()
    assert [(r["method"], r["path"]) for r in recorded] == [
        ("POST", "/v1/chat/completions"), ("GET", "/v1/models")]
    assert recorded[0]["headers"]["x-trace"] == "abc"
    assert recorded[0]["json"]["messages"][0]["content"] == "hi there"
    assert recorded[1]["json"] is None


def test_client_closing_mid_stream_is_counted(client, fake):
    client.post("/_fake/script", json={"tokens": 100, "delay": 0.02})
    with httpx.Client(base_url=fake, timeout=10) as other:
        with other.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert client.get("/_fake/stats").json()["open_streams"] == 1
    deadline = time.monotonic() + 5
    while client.get("/_fake/stats").json() != {"open_streams": 0, "closed_by_client": 1}:
        assert time.monotonic() < deadline, client.get("/_fake/stats").json()
        time.sleep(0.05)


def poll_job(client, job_id, until=("completed", "failed"), timeout=10):
    seen = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1]["status"] not in until:
        assert time.monotonic() < deadline, seen[-1:]
        seen.append(client.get(f"/api/v1/models/download/status/{job_id}").json())
        time.sleep(0.1)
    return seen


def test_a_download_job_advances_then_adds_its_model(client):
    client.post("/_fake/downloadable", json=[{"model": "google/gemma-3-1b", "size_bytes": 1000, "seconds": 0.6}])
    started = client.post("/api/v1/models/download", json={"model": "google/gemma-3-1b"}).json()
    assert started["status"] == "downloading" and started["total_size_bytes"] == 1000
    assert started["job_id"].startswith("job_") and started["started_at"].endswith("Z")
    seen = poll_job(client, started["job_id"])
    done = [s["downloaded_bytes"] for s in seen]
    assert done == sorted(done) and 0 < done[0] < 1000 and seen[-1]["status"] == "completed"
    assert "completed_at" in seen[-1] and "bytes_per_second" in seen[0]
    time.sleep(0.1)  # the job's timer, at the same moment
    assert "google/gemma-3-1b" in [m["key"] for m in client.get("/api/v1/models").json()["models"]]
    again = client.post("/api/v1/models/download", json={"model": "google/gemma-3-1b"}).json()
    assert again == {"status": "already_downloaded"}


def test_hugging_face_downloads_take_a_quantization_and_catalog_ids_do_not(client):
    link = "https://huggingface.co/lmstudio-community/Qwen3-0.6B-GGUF"
    started = client.post("/api/v1/models/download", json={"model": link, "quantization": "Q8_0"})
    assert started.json()["status"] == "downloading"
    wrong = client.post("/api/v1/models/download", json={"model": link, "quantization": "Q2_K"})
    assert wrong.status_code == 404 and "Q4_K_M, Q8_0" in wrong.json()["error"]["message"]
    refused = client.post("/api/v1/models/download", json={"model": "google/gemma-3-1b", "quantization": "Q8_0"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "quantization"


def test_download_failures_unknown_models_and_jobs(client):
    failing = client.post("/api/v1/models/download", json={"model": "broken/fails-halfway"}).json()
    seen = poll_job(client, failing["job_id"])
    assert seen[-1]["status"] == "failed" and seen[-1]["downloaded_bytes"] == 500_000_000
    unknown = client.post("/api/v1/models/download", json={"model": "nobody/nothing"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    gone = client.get("/api/v1/models/download/status/job_nope")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "job_not_found"


def test_loads_make_instances_with_their_settings_and_requests_may_name_one(client):
    model = "llama-3.2-1b-instruct"
    first = client.post("/api/v1/models/load", json={"model": model, "context_length": 65536,
                                                     "echo_load_config": True}).json()
    second = client.post("/api/v1/models/load", json={"model": model, "context_length": 8192,
                                                      "flash_attention": True}).json()
    assert (first["instance_id"], second["instance_id"]) == (model, f"{model}:2")
    assert first["load_config"]["context_length"] == 65536 and "load_config" not in second
    listed = next(m for m in client.get("/api/v1/models").json()["models"] if m["key"] == model)
    assert [(i["id"], i["config"]["context_length"], i["config"]["flash_attention"])
            for i in listed["loaded_instances"]] == [(model, 65536, False), (f"{model}:2", 8192, True)]
    reply = client.post("/v1/chat/completions", json=chat_body(model=f"{model}:2")).json()
    assert reply["model"] == f"{model}:2" and client.get("/_fake/served").json() == {f"{model}:2": 1}
    client.post("/api/v1/models/unload", json={"instance_id": model}).raise_for_status()
    listed = next(m for m in client.get("/api/v1/models").json()["models"] if m["key"] == model)
    assert [i["id"] for i in listed["loaded_instances"]] == [f"{model}:2"]


def test_a_load_refuses_unknown_keys_and_follows_the_script(client):
    refused = client.post("/api/v1/models/load", json={"model": CHAT_MODEL, "ttl": 60})
    assert refused.status_code == 400 and "ttl" in refused.json()["error"]["message"]
    client.post("/_fake/script", json={"load_error": "not enough memory", "load_delay": 0.2})
    started = time.monotonic()
    failed = client.post("/api/v1/models/load", json={"model": CHAT_MODEL})
    assert time.monotonic() - started >= 0.2
    assert failed.status_code == 500 and failed.json()["error"]["message"] == "not enough memory"
    assert [r["json"] for r in client.get("/_fake/requests").json()
            if r["path"] == "/api/v1/models/load"] == [{"model": CHAT_MODEL, "ttl": 60}, {"model": CHAT_MODEL}]
