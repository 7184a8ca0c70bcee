"""End to end, with the official clients against the proxy under Daphne and the fake LM Studio:
`ollama create` in both body forms, `show --modelfile` round trips, copy and delete of created aliases,
what LM Studio is sent for them, bad Modelfiles; `think: "max"`, log probabilities through every
dialect that carries them, and vision families. (The `ollama` JS client is not installed here.)"""
import subprocess

import httpx
import ollama
import openai
import orjson
import pytest

from tests.conftest import PY, ROOT, db_query, start_proxy, stop

pytestmark = pytest.mark.e2e

MODELFILE = '''# Modelfile for a pirate
FROM llama-3.2-1b-instruct
PARAMETER temperature 0.6
PARAMETER num_ctx 16384
PARAMETER top_k 20
PARAMETER stop "<|eot_id|>"
PARAMETER stop """
"""
SYSTEM """You are a pirate.
Say "arr" often."""
MESSAGE user Who are you?
MESSAGE assistant "  Cap'n Byte, matey.  "
LICENSE """MIT License

Copyright (c) 2025 Cap'n Byte"""
'''
PIRATE_MESSAGES = [{"role": "user", "content": "Who are you?"},
                   {"role": "assistant", "content": "  Cap'n Byte, matey.  "}]


@pytest.fixture(scope="module")
def server(fake_lmstudio, tmp_path_factory):
    """A server of our own: these tests store aliases in its database."""
    proxy = start_proxy(tmp_path_factory.mktemp("create"), fake_lmstudio.url, PULL_POLL_INTERVAL=0.2)
    yield proxy
    stop(proxy.proc)


@pytest.fixture
def client(server):
    return ollama.Client(host=server.url, timeout=30)


@pytest.fixture(autouse=True)
def no_aliases_left(server):
    yield
    db_query(server, "DELETE FROM routing_alias")


def create_lines(server, body: dict) -> list[dict]:
    with httpx.stream("POST", f"{server.url}/api/create", json=body, timeout=30) as response:
        assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
        return [orjson.loads(line) for line in response.iter_lines()]


def stored(server, name: str) -> dict:
    [row] = db_query(server, "SELECT * FROM routing_alias WHERE name = ?", name)
    return {k: v for k, v in row.items() if k not in ("id", "name", "description", "created_at", "updated_at")}


def chat(client, fake, model: str, **extra) -> dict:
    """Chat through the proxy; returns the body the fake LM Studio got."""
    fake.reset()
    client.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=False, **extra)
    [sent] = [r["json"] for r in fake.requests("/v1/chat/completions")]
    return sent


def test_the_sdks_create_makes_an_alias_whose_settings_reach_lm_studio(client, fake):
    done = client.create(model="pirate", from_="llama-3.2-1b-instruct", system="You are a pirate.",
                         parameters={"temperature": 0.6, "num_ctx": 16384, "top_k": 20, "stop": ["<|eot_id|>"]},
                         messages=PIRATE_MESSAGES, license="MIT")
    assert done.status == "success"
    sent = chat(client, fake, "pirate")
    [load] = [r["json"] for r in fake.requests("/api/v1/models/load")]  # num_ctx: its load setting
    assert (load["model"], load["context_length"]) == ("llama-3.2-1b-instruct", 16384)
    assert (sent["model"], sent["temperature"], sent["top_k"], sent["stop"]) == (
        "llama-3.2-1b-instruct", 0.6, 20, ["<|eot_id|>"])
    assert sent["messages"] == [{"role": "system", "content": "You are a pirate."}, *PIRATE_MESSAGES,
                                {"role": "user", "content": "hi"}]
    shown = client.show("pirate")
    assert shown.license == "MIT" and shown.modelinfo["llama.context_length"] == 16384
    assert "pirate:latest" in [m.model for m in client.list().models]


def test_a_modelfile_in_the_older_body_form_streams_status_lines_ending_in_success(server, client, fake):
    lines = create_lines(server, {"model": "pirate", "modelfile": MODELFILE})
    assert lines[0] == {"status": "gathering model components"} and lines[-1] == {"status": "success"}
    row = stored(server, "pirate")
    assert (row["model"], row["temperature"], row["context_length"], orjson.loads(row["options"])) == (
        "llama-3.2-1b-instruct", 0.6, 16384, {"top_k": 20, "stop": ["<|eot_id|>", "\n"]})
    assert row["system"] == 'You are a pirate.\nSay "arr" often.'
    assert row["license"] == "MIT License\n\nCopyright (c) 2025 Cap'n Byte"
    assert orjson.loads(row["messages"]) == PIRATE_MESSAGES
    sent = chat(client, fake, "pirate")
    assert sent["messages"][:3] == [{"role": "system", "content": row["system"]}, *PIRATE_MESSAGES]


def test_show_modelfile_creates_the_identical_alias_again(server, client, fake):
    create_lines(server, {"model": "pirate", "modelfile": MODELFILE})
    shown = client.show("pirate")
    assert "\nFROM llama-3.2-1b-instruct\n" in shown.modelfile and "# FROM pirate:latest" in shown.modelfile
    raw = httpx.post(f"{server.url}/api/show", json={"model": "pirate"}).json()
    assert raw["system"] == 'You are a pirate.\nSay "arr" often.' and raw["messages"] == PIRATE_MESSAGES
    assert raw["parameters"].splitlines()[2:] == ["temperature 0.6", "top_k 20", 'stop "<|eot_id|>"', 'stop "\\n"']
    assert create_lines(server, {"model": "pirate-again", "modelfile": shown.modelfile})[-1]["status"] == "success"
    assert stored(server, "pirate-again") == stored(server, "pirate")
    # and through the SDK's JSON form, from what show answered
    again = client.create(model="pirate-json", from_="llama-3.2-1b-instruct", system=raw["system"],
                          messages=raw["messages"], license=raw["license"],
                          parameters={"temperature": 0.6, "num_ctx": 16384, "top_k": 20,
                                      "stop": ["<|eot_id|>", "\n"]})
    assert again.status == "success" and stored(server, "pirate-json") == stored(server, "pirate")


def test_a_created_alias_is_exported_copied_and_deleted(server, client, fake):
    client.create(model="pirate", from_="tiny", system="Arr.", messages=PIRATE_MESSAGES[:1])
    exported = subprocess.run([PY, "manage.py", "routes", "export"], cwd=ROOT, env=server.env, check=True,
                              capture_output=True, text=True).stdout
    assert "  pirate:\n    model: llama-3.2-1b-instruct\n    system: Arr.\n    messages:\n" in exported
    assert client.copy("pirate", "pirate-copy").status == "success"
    assert stored(server, "pirate-copy") == stored(server, "pirate")
    assert chat(client, fake, "pirate-copy")["messages"][1] == PIRATE_MESSAGES[0]
    assert client.delete("pirate").status == "success"
    assert "pirate:latest" not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as info:
        client.show("pirate")
    assert info.value.status_code == 404


def test_creating_from_an_alias_starts_from_its_settings_and_over_a_file_alias_overrides_it(server, client, fake):
    client.create(model="coder", from_="coder", parameters={"top_k": 5})
    sent = chat(client, fake, "coder")
    assert (sent["model"], sent["temperature"], sent["top_p"], sent["top_k"], sent["ttl"]) == (
        "qwen2.5-7b-instruct", 0.2, 0.9, 5, 1800)
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    client.delete("coder")  # the override goes; routes.yaml's alias serves again
    assert "top_k" not in chat(client, fake, "coder")


def test_a_hugging_face_from_is_downloaded_first_with_pulls_progress(server, client, fake):
    httpx.post(f"{fake.url}/_fake/downloadable", json=[{
        "model": "https://huggingface.co/acme/Pirate-7B-GGUF", "key": "pirate-7b", "quantizations": ["Q4_K_M"],
        "size_bytes": 4000, "seconds": 1.0}]).raise_for_status()
    parts = list(client.create(model="pirate", from_="hf.co/acme/Pirate-7B-GGUF:q4_k_m", system="Arr.",
                               stream=True))
    assert parts[0].status == "gathering model components" and parts[-1].status == "success"
    bars = [p for p in parts if p.digest]
    assert bars and bars[-1].completed == bars[-1].total == 4000
    row = stored(server, "pirate")
    assert (row["model"], row["download"], row["system"]) == (
        "pirate-7b", "hf.co/acme/Pirate-7B-GGUF:Q4_K_M", "Arr.")
    # no fake.reset() here: it would forget the downloaded model
    answer = client.chat(model="pirate", messages=[{"role": "user", "content": "hi"}])
    assert answer.message.content == "Hello from pirate-7b! You said: hi"


@pytest.mark.parametrize("modelfile, message", [
    ("FROM llama-3.2-1b-instruct\nPARAMETERS temperature 1", "Modelfile line 2: unknown instruction 'PARAMETERS'"),
    ('FROM llama-3.2-1b-instruct\n\nSYSTEM """never closed\n', 'Modelfile line 3: SYSTEM: the """ that opens'),
    ("FROM llama-3.2-1b-instruct\nPARAMETER temprature 1", "Modelfile line 2: unknown parameter 'temprature'"),
    ("# nothing serves this\nFROM llama3:70b",
     "Modelfile line 2: FROM: 'llama3:70b' is no alias, no model LM Studio has, and nothing it can download"),
    ("FROM acme/not-in-the-catalog", "Modelfile line 1: FROM: cannot pull 'acme/not-in-the-catalog'"),
    ("FROM llama-3.2-1b-instruct\nTEMPLATE {{ .Prompt }}", "Modelfile line 2: TEMPLATE: LM Studio applies the "
                                                           "model's own chat template"),
])
def test_a_bad_modelfile_is_a_400_naming_the_line_and_nothing_is_stored(server, fake, modelfile, message):
    r = httpx.post(f"{server.url}/api/create", json={"model": "bad", "modelfile": modelfile}, timeout=30)
    assert r.status_code == 400 and r.json()["error"].startswith(message)
    assert db_query(server, "SELECT name FROM routing_alias") == []


@pytest.mark.parametrize("call, message", [
    (lambda c: c.create(model="bad", from_="tiny", template="{{ .Prompt }}"), "template: LM Studio applies"),
    (lambda c: c.create(model="bad", from_="tiny", quantize="q4_K_M"), "quantize: LM Studio cannot quantize"),
    (lambda c: c.create(model="bad", from_="tiny", adapters={"a.gguf": "sha256:00"}),
     "adapters: LM Studio cannot"),
    (lambda c: c.create(model="bad", from_="tiny", parameters={"temperature": 5}),
     "parameters.temperature: alias 'bad': 'temperature' must be between 0 and 2"),
])
def test_what_lm_studio_cannot_honour_is_a_400_from_the_sdk(server, client, call, message):
    with pytest.raises(ollama.ResponseError) as info:
        call(client)
    assert info.value.status_code == 400 and info.value.error.startswith(message)
    assert db_query(server, "SELECT name FROM routing_alias") == []


def test_think_max_is_sent_as_the_highest_reasoning_effort(client, fake):
    assert chat(client, fake, "thinker", think="max")["reasoning_effort"] == "high"
    fake.reset()
    answer = client.generate(model="thinker", prompt="x", think="max", stream=False)
    assert answer.thinking == "Let me think."
    assert fake.requests("/v1/chat/completions")[0]["json"]["reasoning_effort"] == "high"


def test_ollama_chat_and_generate_return_log_probabilities_streamed_and_not(client, fake):
    whole = client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=2,
                        stream=False)
    tokens = [entry.token for entry in whole.logprobs]
    assert "".join(tokens) == whole.message.content
    assert len(whole.logprobs[0].top_logprobs) == 2 and whole.logprobs[0].top_logprobs[0].token == tokens[0]
    assert fake.requests("/v1/chat/completions")[-1]["json"]["top_logprobs"] == 2
    chunks = list(client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], logprobs=True,
                              stream=True))
    assert [c.logprobs[0].token for c in chunks[:-1]] == [c.message.content for c in chunks[:-1]]
    assert [e.logprob for c in chunks[:-1] for e in c.logprobs] == [e.logprob for e in whole.logprobs]
    parts = list(client.generate(model="tiny", prompt="hi", logprobs=True, stream=True))
    assert "".join(e.token for p in parts for e in p.logprobs or ()) == "".join(p.response for p in parts)
    raw = client.generate(model="tiny", prompt="hi", raw=True, logprobs=True, top_logprobs=1, stream=False)
    assert "".join(e.token for e in raw.logprobs) == raw.response and len(raw.logprobs[0].top_logprobs) == 1
    assert fake.requests("/v1/completions")[-1]["json"]["logprobs"] == 1
    plain = client.chat(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert plain.logprobs is None  # not asked: no field


def test_openai_chat_and_completions_pass_log_probabilities_through(server, fake):
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=30, max_retries=0)
    answer = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                            logprobs=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    assert "".join(e.token for e in content) == answer.choices[0].message.content
    assert len(content[0].top_logprobs) == 3 and content[0].bytes == list(content[0].token.encode())
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                            logprobs=True, stream=True)
    streamed = [e for chunk in stream for choice in chunk.choices if choice.logprobs
                for e in choice.logprobs.content]
    assert [e.logprob for e in streamed] == [e.logprob for e in content]
    completion = client.completions.create(model="tiny", prompt="hi", logprobs=2)
    logprobs = completion.choices[0].logprobs
    assert "".join(logprobs.tokens) == completion.choices[0].text and len(logprobs.top_logprobs[0]) == 2
    plain = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert plain.choices[0].logprobs is None


def test_a_vision_models_families_include_clip(client, fake):
    assert client.show("vision").details.families == ["qwen2_vl", "clip"]
    listed = {m.model: m.details.families for m in client.list().models}
    assert listed["vision:latest"] == ["qwen2_vl", "clip"] and listed["tiny:latest"] == ["llama"]
