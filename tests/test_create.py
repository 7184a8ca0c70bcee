"""`POST /api/create`: the request in both of Ollama's forms as an alias (routing/config/creation.py), the
errors (a 400 naming the Modelfile line or the field, before anything is stored), and the endpoint
in-process against a respx LM Studio (routing/api/create.py): stored like /api/copy, shown back by
/api/show, applied to the next chat."""
import httpx
import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from routing.config import creation
from routing.config.downloads import Download, downloaded_id
from routing.config.messages import Message
from routing.config.table import RouteAlias
from routing.core.errors import BadRequest
from routing.models import Alias
from tests.upstream_stubs import chat_stream

BASE = RouteAlias(name="coder", model="qwen2.5-7b-instruct", ttl=1800, temperature=0.2, system="You are terse.",
                  options={"top_p": 0.9, "seed": 1}, backends=("default",), context_length=8192,
                  messages=(Message("user", "hello"),), license="MIT")


def made(body: dict, base: RouteAlias | None = None, model: str = "qwen2.5-7b-instruct") -> RouteAlias:
    wanted = creation.create_request(body, "mine")
    return creation.alias_of(wanted, base, model)


@pytest.mark.parametrize("body, fields", [
    ({"from": "m"}, {}),
    ({"from": "m", "system": "Be brief.", "license": ["MIT", "Apache-2.0"]},
     {"system": "Be brief.", "license": "MIT\nApache-2.0"}),
    ({"from": "m", "parameters": {"temperature": 0.7, "num_ctx": 16384, "top_k": 20, "stop": "</s>",
                                  "num_predict": 256.0, "use_mmap": False}},
     {"temperature": 0.7, "context_length": 16384, "options": {"top_k": 20, "stop": ["</s>"], "num_predict": 256,
                                                               "use_mmap": False}}),
    ({"from": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo",
                                                                      "images": None}]},
     {"messages": (Message("user", "hi"), Message("assistant", "yo"))}),
    ({"from": "m", "modelfile": "FROM other\nSYSTEM from the file\nPARAMETER seed 3"},  # JSON fields win
     {"system": "from the file", "options": {"seed": 3}}),
    ({"modelfile": "FROM m\nSYSTEM from the file", "system": "from the JSON"}, {"system": "from the JSON"}),
    ({"from": "m", "template": "", "adapters": {}, "quantize": None}, {}),  # empty: nothing asked
])
def test_the_json_form_sets_the_aliases_fields(body, fields):
    alias = made(body)
    assert alias == RouteAlias(name="mine", model="qwen2.5-7b-instruct", source="admin",
                               **{"options": alias.options, **fields})
    assert dict(alias.options) == fields.get("options", {})


def test_from_an_alias_starts_from_its_settings_and_lays_the_request_over_them():
    alias = made({"from": "coder", "parameters": {"seed": 2, "num_ctx": 4096}, "system": "Be kind."}, BASE)
    assert (alias.model, alias.ttl, alias.temperature, alias.system, alias.backends, alias.context_length,
            alias.messages, alias.license) == ("qwen2.5-7b-instruct", 1800, 0.2, "Be kind.", ("default",), 4096,
                                               (Message("user", "hello"),), "MIT")
    assert dict(alias.options) == {"top_p": 0.9, "seed": 2}
    cleared = made({"from": "coder", "system": "", "messages": [], "license": ""}, BASE)
    assert (cleared.system, cleared.messages, cleared.license) == (None, (), None)


@pytest.mark.parametrize("body, message", [
    ({}, "from is required"),
    ({"from": 3}, "from: must be a non-empty string"),
    ({"from": "m", "template": "{{ .Prompt }}"}, "template: LM Studio applies the model's own chat template"),
    ({"from": "m", "adapters": {"lora.gguf": "sha256:00"}}, "adapters: LM Studio cannot apply adapters"),
    ({"from": "m", "quantize": "q4_K_M"}, "quantize: LM Studio cannot quantize a model"),
    ({"files": {"model.gguf": "sha256:00"}}, "files: LM Studio cannot build a model from files"),
    ({"from": "./model.gguf"}, "from: LM Studio cannot build a model from files"),
    ({"from": "m", "parameters": {"temprature": 1}}, "parameters: unknown parameter 'temprature'"),
    ({"from": "m", "parameters": {"top_k": "many"}}, "parameters.top_k: must be a number"),
    ({"from": "m", "parameters": {"num_ctx": 1.5}}, "parameters.num_ctx: must be a whole number"),
    ({"from": "m", "parameters": {"use_mmap": 1}}, "parameters.use_mmap: must be true or false"),
    ({"from": "m", "parameters": {"stop": [1]}}, "parameters.stop: must be a string or a list of strings"),
    ({"from": "m", "parameters": [1]}, "parameters must be an object"),
    ({"from": "m", "parameters": {"top_p": 2}}, "parameters.top_p: top_p must be between 0 and 1, got 2"),
    ({"modelfile": "FROM m\nPARAMETER seed 1" + "0" * 30},
     "Modelfile line 2: PARAMETER seed: seed must be between"),
    ({"from": "m", "parameters": {"temperature": 3}},
     "parameters.temperature: alias 'mine': 'temperature' must be between 0 and 2"),
    ({"from": "m", "parameters": {"num_ctx": 0}}, "parameters.num_ctx: alias 'mine': 'context_length' must be a "
                                                  "positive whole number"),
    ({"from": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages: alias 'mine': 'messages[0].role'"),
    ({"from": "m", "messages": [{"role": "user", "content": "x", "images": ["AAAA"]}]},
     "messages: alias 'mine': 'messages[0]' may have only role and content, not images"),
    ({"from": "m", "license": 5}, "license: must be a string or a list of strings"),
    ({"from": "m", "system": ["x"]}, "system: must be a string"),
    ({"modelfile": 5}, "modelfile must be a string"),
    ({"modelfile": "FROM m\nTEMPLATE {{ .Prompt }}"}, "Modelfile line 2: TEMPLATE: LM Studio applies the model's"),
    ({"modelfile": "FROM m\n\nADAPTER ./lora.gguf"}, "Modelfile line 3: ADAPTER: LM Studio cannot apply adapters"),
    ({"modelfile": "FROM ./qwen.gguf"}, "Modelfile line 1: FROM: LM Studio cannot build a model from files"),
    ({"modelfile": "FROM m\nPARAMETER temperature 9"}, "Modelfile line 2: PARAMETER temperature: alias 'mine': "
                                                       "'temperature' must be between 0 and 2"),
    ({"modelfile": "FROM m\nPARAMETER num_ctx -1"}, "Modelfile line 2: PARAMETER num_ctx: alias 'mine': "
                                                    "'context_length' must be a positive whole number"),
    ({"modelfile": "FROM m\nRENDERER qwen3"}, "Modelfile line 2: RENDERER: LM Studio renders prompts"),
])
def test_what_cannot_be_done_is_a_400_naming_the_line_or_the_field(body, message):
    with pytest.raises(BadRequest) as info:
        made(body)
    assert info.value.message.startswith(message)


@pytest.mark.parametrize("requires, ok", [("0.6.0", True), ("0.14.0", True), ("v0.14", True), ("0.14.1", False),
                                          ("1.0.0", False)])
def test_requires_is_checked_against_the_ollama_version_served(requires, ok):
    wanted = creation.create_request({"modelfile": f"FROM m\nREQUIRES {requires}"}, "mine")
    if ok:
        creation.check_requires(wanted, "0.14.0")
    else:
        with pytest.raises(BadRequest, match=f"Modelfile line 2: REQUIRES: needs Ollama {requires}; this proxy"):
            creation.check_requires(wanted, "0.14.0")


@pytest.mark.parametrize("download, before, after, model", [
    (Download("google/gemma-3-1b"), {"a"}, {"a", "google/gemma-3-1b"}, "google/gemma-3-1b"),
    (Download("lmstudio-community/Qwen3-0.6B-GGUF", hf=True), {"a"}, {"a", "qwen3-0.6b"}, "qwen3-0.6b"),
    (Download("lmstudio-community/Qwen3-0.6B-GGUF", hf=True), {"qwen3-0.6b"}, {"qwen3-0.6b"}, "qwen3-0.6b"),
    (Download("user/Phi-4-MLX", hf=True), {"a"}, {"a", "b", "user/phi-4"}, "user/phi-4"),
    (Download("user/repo", hf=True), {"a"}, {"a", "b", "c"}, None),
])
def test_it_tells_which_model_id_a_download_became(download, before, after, model):
    assert downloaded_id(download, before, sorted(after)) == model


# --- The endpoint, in-process -------------------------------------------------------------------

LM_MODELS = {"data": [{"id": "qwen2.5-7b-instruct", "type": "llm"}, {"id": "llama-3.2-1b-instruct"},
                      {"id": "qwen2-vl-2b-instruct", "type": "vlm", "arch": "qwen2_vl"}]}
MODELFILE = '''# a pirate
FROM llama-3.2-1b-instruct
PARAMETER temperature 0.6
PARAMETER num_ctx 16384
PARAMETER stop "<|eot_id|>"
SYSTEM """You are a pirate.
Answer in one line."""
MESSAGE user Who are you?
MESSAGE assistant "  Cap'n Byte.  "
LICENSE MIT
'''

with_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def lmstudio(upstream_mock):
    upstream_mock.get("/api/v0/models").mock(return_value=httpx.Response(200, json=LM_MODELS))
    return upstream_mock


async def post(path: str, body: dict, method: str = "post"):
    return await getattr(AsyncClient(), method)(path, orjson.dumps(body), content_type="application/json")


def lines(response) -> list[dict]:
    return [orjson.loads(line) for line in response.content.splitlines()]


def stored(name: str) -> Alias | None:
    return Alias.objects.filter(name=name).first()


def settings_of(row: Alias) -> dict:
    """A stored alias's settings, without its name and the notes about it."""
    return {k: v for k, v in row.__dict__.items() if k not in ("_state", "id", "name", "description",
                                                               "created_at", "updated_at")}


@pytest.mark.anyio
@with_db
async def test_a_modelfile_makes_an_admin_alias_streamed_as_ollama_streams_create(lmstudio, routes_file):
    r = await post("/api/create", {"model": "pirate:latest", "modelfile": MODELFILE})
    assert r.status_code == 200 and r["Content-Type"] == "application/x-ndjson"
    assert lines(r) == [{"status": "gathering model components"},
                        {"status": "using LM Studio model llama-3.2-1b-instruct"},
                        {"status": "writing alias pirate"}, {"status": "success"}]
    row = await sync_to_async(stored)("pirate")
    assert (row.model, row.temperature, row.context_length, row.options, row.system, row.license) == (
        "llama-3.2-1b-instruct", 0.6, 16384, {"stop": ["<|eot_id|>"]}, "You are a pirate.\nAnswer in one line.",
        "MIT")
    assert row.messages == [{"role": "user", "content": "Who are you?"},
                            {"role": "assistant", "content": "  Cap'n Byte.  "}]
    tags = orjson.loads((await AsyncClient().get("/api/tags")).content)
    assert "pirate:latest" in [m["name"] for m in tags["models"]]


@pytest.mark.anyio
@with_db
async def test_show_gives_a_modelfile_that_creates_the_same_alias_again(lmstudio, routes_file):
    await post("/api/create", {"model": "pirate", "modelfile": MODELFILE, "stream": False})
    shown = orjson.loads((await post("/api/show", {"model": "pirate"})).content)
    assert shown["system"] == "You are a pirate.\nAnswer in one line." and shown["license"] == "MIT"
    assert shown["messages"][1] == {"role": "assistant", "content": "  Cap'n Byte.  "}
    assert shown["parameters"].splitlines()[2:] == ["temperature 0.6", 'stop "<|eot_id|>"']
    r = await post("/api/create", {"model": "pirate-again", "modelfile": shown["modelfile"], "stream": False})
    assert orjson.loads(r.content) == {"status": "success"}
    first, again = await sync_to_async(stored)("pirate"), await sync_to_async(stored)("pirate-again")
    assert settings_of(first) == settings_of(again)


@pytest.mark.anyio
@with_db
async def test_a_created_alias_sends_its_system_conversation_and_options(lmstudio, routes_file):
    await post("/api/create", {"model": "pirate", "modelfile": MODELFILE})
    chat = lmstudio.post("/v1/chat/completions").mock(side_effect=lambda request: chat_stream())
    mine = [{"role": "system", "content": "Mine."}, {"role": "user", "content": "hi"}]
    r = await post("/api/chat", {"model": "pirate", "stream": False, "options": {"temperature": 1.5},
                                 "messages": mine})
    assert r.status_code == 200
    sent = orjson.loads(chat.calls.last.request.content)
    assert (sent["model"], sent["temperature"], sent["stop"]) == ("llama-3.2-1b-instruct", 0.6, ["<|eot_id|>"])
    assert sent["messages"] == [{"role": "system", "content": "You are a pirate.\nAnswer in one line."},
                                {"role": "system", "content": "Mine."},
                                {"role": "user", "content": "Who are you?"},
                                {"role": "assistant", "content": "  Cap'n Byte.  "},
                                {"role": "user", "content": "hi"}]


@pytest.mark.anyio
@with_db
async def test_creating_over_a_routes_yaml_alias_overrides_it_and_delete_brings_it_back(lmstudio, routes_file):
    r = await post("/api/create", {"model": "coder", "from": "coder", "system": "Be loud.", "stream": False})
    assert r.status_code == 200
    row = await sync_to_async(stored)("coder")  # an admin override, starting from the file's alias
    assert (row.model, row.ttl, row.temperature, row.options, row.system) == (
        "qwen2.5-7b-instruct", 1800, 0.2, {"top_p": 0.9}, "Be loud.")
    assert orjson.loads((await post("/api/show", {"model": "coder"})).content)["system"] == "Be loud."
    assert (await post("/api/delete", {"model": "coder"}, "delete")).status_code == 200
    assert orjson.loads((await post("/api/show", {"model": "coder"})).content)["system"] == "You are terse."


@pytest.mark.anyio
@with_db
async def test_a_created_alias_can_be_copied_and_deleted(lmstudio, routes_file):
    await post("/api/create", {"model": "pirate", "modelfile": MODELFILE})
    assert (await post("/api/copy", {"source": "pirate", "destination": "pirate2"})).status_code == 200
    copied = await sync_to_async(stored)("pirate2")
    assert settings_of(copied) == settings_of(await sync_to_async(stored)("pirate"))
    assert (await post("/api/delete", {"model": "pirate"}, "delete")).status_code == 200
    assert await sync_to_async(stored)("pirate") is None


@pytest.mark.anyio
@with_db
@pytest.mark.parametrize("body, status, message", [
    ({"modelfile": MODELFILE}, 400, "model is required"),
    ({"model": "x", "modelfile": "FROM llama3:8b"}, 400, "Modelfile line 1: FROM: 'llama3:8b' is no alias, no "
                                                         "model LM Studio has, and nothing it can download"),
    ({"model": "x", "from": "coder", "template": "{{ .System }}"}, 400, "template: LM Studio applies"),
    ({"model": "x", "modelfile": "FROM coder\nPARAMETER temprature 1"}, 400,
     "Modelfile line 2: unknown parameter 'temprature'"),
    ({"model": "x", "modelfile": 'FROM coder\nSYSTEM """open'}, 400, "Modelfile line 2: SYSTEM: the \"\"\""),
    ({"model": "x", "from": "coder", "stream": "no"}, 400, "stream must be true or false"),
    ({"model": "x" * 201, "from": "coder"}, 400, "name: Ensure this value has at most 200 characters"),
])
async def test_a_refused_create_stores_nothing(lmstudio, routes_file, body, status, message):
    r = await post("/api/create", body)
    assert r.status_code == status and orjson.loads(r.content)["error"].startswith(message)
    assert not await Alias.objects.aexists()


@pytest.mark.anyio
@with_db
async def test_a_from_lm_studio_cannot_download_is_a_400_naming_the_line(lmstudio, routes_file):
    lmstudio.post("/api/v1/models/download").mock(return_value=httpx.Response(404, json={
        "error": {"type": "invalid_request_error", "message": "not found", "code": "model_not_found"}}))
    r = await post("/api/create", {"model": "x", "modelfile": "# hi\nFROM acme/no-such-model"})
    assert r.status_code == 400
    assert orjson.loads(r.content)["error"].startswith("Modelfile line 2: FROM: cannot pull 'acme/no-such-model'")
    assert not await Alias.objects.aexists()


@pytest.mark.anyio
@with_db
async def test_push_and_blob_uploads_are_501s_in_ollamas_shape_and_no_blob_is_here(lmstudio, routes_file):
    r = await post("/api/push", {"model": "coder"})
    assert r.status_code == 501 and set(orjson.loads(r.content)) == {"error"}
    r = await AsyncClient().post(f"/api/blobs/sha256:{'0' * 64}", b"data", content_type="application/octet-stream")
    assert r.status_code == 501 and "cannot build models from files" in orjson.loads(r.content)["error"]
    assert (await AsyncClient().head(f"/api/blobs/sha256:{'0' * 64}")).status_code == 404


@pytest.mark.anyio
@with_db
async def test_a_vision_models_families_include_clip(lmstudio, routes_file):
    shown = orjson.loads((await post("/api/show", {"model": "vision"})).content)
    assert shown["details"]["families"] == ["qwen2_vl", "clip"] and "vision" in shown["capabilities"]
    tags = orjson.loads((await AsyncClient().get("/api/tags")).content)["models"]
    families = {m["name"]: m["details"]["families"] for m in tags}
    assert families["vision:latest"] == ["qwen2_vl", "clip"] and families["tiny:latest"] is None


@pytest.mark.anyio
@with_db
@pytest.mark.parametrize("body", [
    b'{"model": "x", "from": ["coder"]}', b'{"model": "x", "from": "hf.co/"}',
    b'{"model": "x", "from": "http://x"}',
    b'{"model": "x", "from": "coder", "parameters": {"seed": 1e400}}',
    b'{"model": "x", "from": "coder", "parameters": {"seed": 1e300}}',
    b'{"model": "x", "from": "coder", "parameters": 5}',
    b'{"model": "x", "from": "coder", "messages": "hi"}', b'{"model": "x", "from": "coder", "messages": [null]}',
    b'{"model": "x", "from": "coder", "messages": [{"role": "user", "content": "x", "images": {"a": 1}}]}',
    b'{"model": "x", "from": "coder", "requires": 5}', b'{"model": "x", "from": "coder", "requires": "soon"}',
    b'{"model": "x", "from": "coder", "template": 5}', b'{"model": "x", "modelfile": "\\u0000FROM"}',
    b'{"model": "x", "modelfile": "FROM \\""}', b'{"model": "x", "modelfile": "#"}',
    b'{"model": "x", "modelfile": "FROM coder\\nMESSAGE"}', b'{"model": ["x"], "from": "coder"}',
])
async def test_odd_bodies_are_400s_never_500s(lmstudio, routes_file, body):
    r = await AsyncClient().post("/api/create", body, content_type="application/json")
    assert r.status_code == 400, r.content
    assert not await Alias.objects.aexists()
