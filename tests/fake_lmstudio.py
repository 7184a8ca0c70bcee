"""Fake LM Studio server: a test double for the proxy's tests and benchmarks (not product code).

Run as its own process: ``python tests/fake_lmstudio.py --host 127.0.0.1 --port 0``. Once bound it
prints one line, ``LISTENING <port>``, and serves until SIGTERM/SIGINT (one asyncio process, aiohttp +
orjson, no access log).

LM Studio behaviour it imitates (see shared/reference/lmstudio-api.md):

* ``GET /v1/models``, ``/api/v0/models[/{id}]`` (ids may contain ``/``), ``/api/v1/models``, and
  ``POST /api/v1/models/load|unload``.
* Instances: a model may be loaded several times, each instance with an id (the model id, then
  ``id:2``, ``id:3``...) and a ``config`` (``context_length``, and for LLMs ``eval_batch_size``,
  ``flash_attention``, ``offload_kv_cache_to_gpu``), listed as ``loaded_instances`` by
  ``/api/v1/models``; /api/v0 shows a model ``loaded`` with its first instance's context.
  ``POST /api/v1/models/load`` loads one more instance with the settings it is given (``context_length``,
  ``eval_batch_size``, ``num_experts``, ``flash_attention``, ``offload_kv_cache_to_gpu``; any other key
  is a 400) and answers ``instance_id``, ``load_time_seconds``, ``status`` and, with
  ``echo_load_config``, ``load_config``. A generation request may name a loaded instance's id as its
  ``model``: that instance serves it (a model id: its first instance, JIT-loading one if none).
* ``POST /v1|/api/v0`` ``chat/completions``, ``completions``, ``embeddings``. SSE streams: the first
  chat chunk carries ``role`` and the first token; a final chunk has an empty delta and the
  ``finish_reason`` (stop, length, tool_calls); with ``stream_options.include_usage`` a chunk with
  ``choices: []`` and ``usage``; then ``data: [DONE]``. Non-streamed answers carry ``usage`` and
  ``stats`` (/api/v0 adds ``model_info`` and ``runtime``).
* Tool calls stream in fragments: id + name with ``arguments: ""``, then 4-character pieces of the
  JSON string ``{"city": "Paris"}``. Reasoning models (``qwen3-4b-thinking``) send
  ``delta.reasoning`` / ``message.reasoning`` ("Let me think.") before the content.
* JIT: a successful request for a not-loaded model loads it. With JIT off (script ``jit: false``) it
  fails with 400 ``Model "x" is not loaded. Please load it with lms load or enable JIT.``; real LM
  Studio says (when nothing is loaded) "No models loaded. Please load a model in the developer page
  or use the 'lms load' command." (type invalid_request_error, param model, code null).
* Errors are ``{"error": {"message", "type", "param", "code"}}``, unknown model 404
  ``model_not_found``; any unknown path or method answers **200** with
  ``{"error": "Unexpected endpoint or method. (GET /x)"}``.

Log probabilities, when asked: chat (``logprobs: true``, ``top_logprobs: N``) gives each content
token's chunk ``logprobs: {"content": [{token, logprob, bytes, top_logprobs: [N alternatives]}],
"refusal": null}`` (a non-streamed answer: every content token's), text completions (``logprobs: N``,
OpenAI's legacy form) ``{"tokens", "token_logprobs", "top_logprobs" (N alternatives as {token:
logprob}, null for 0), "text_offset"}``. A token's logprob is a deterministic function of its text
(``token_logprob``); its k-th alternative is ``<token>~k`` at ``logprob - k``. Not asked: ``logprobs: null``.

Answers are deterministic: ``Hello from <model>! You said: <last user text>``, ``The tool said:
<content>`` after a ``tool`` message, a tool call to the first tool when there are ``tools`` and the
last user text has the word "weather", ``Completion for: <prompt>`` for completions. Tokens are the
text split at spaces, each space kept with the following word. prompt_tokens counts the
whitespace-separated words of all message texts (or the prompt); completion_tokens counts streamed
pieces (reasoning + content or argument fragments); ``max_tokens`` caps content tokens (finish
``length``). Embeddings are 8-dim unit vectors from SHA-256 of the text. Not imitated: TTL,
auto-evict, real tokenisation, sampling.

Control plane (``/_fake/...``, never recorded, not part of LM Studio):

* ``GET /_fake/requests``: recorded requests, oldest first (the last 10 000), each
  ``{"method", "path", "headers" (lower-case names), "json" (body or null)}``.
* ``POST /_fake/reset``: clear the recording and script, restore the default catalogue and its
  loaded states, zero ``closed_by_client``.
* ``POST /_fake/script``: replace the script for chat/completion requests. Optional keys: ``reply``
  str; ``tokens`` int (emit "tok0", " tok1", ...); ``delay``, ``first_token_delay`` seconds
  (non-streamed answers wait the same total); ``cut_after`` int (close the connection after N
  content tokens, no [DONE]); ``status`` int + ``error`` str (answer with that status and
  ``{"error": {"message": error}}``); ``jit`` bool (default true); ``load_delay`` seconds (each
  ``/api/v1/models/load`` takes that long) and ``load_error`` str (loads fail with a 500 and that
  message). Unknown keys are a 400.
* ``POST /_fake/models``: replace the catalogue (until reset) with a list of /api/v0-style objects
  (only ``id`` required; also display_name, params_string, size_bytes, reasoning).
* ``GET /_fake/stats``: ``{"open_streams", "closed_by_client"}``.
* ``GET /_fake/served``: instance id -> how many generation requests it served (since the reset).

Downloads (LM Studio 0.4's ``/api/v1/models/download``), in one block below:

* ``POST /api/v1/models/download {model, quantization?}``: ``model`` is a catalog id of the
  downloadable list or ``https://huggingface.co/<user>/<repo>`` (``quantization`` only there, 400
  otherwise). Answers ``{job_id, status: "downloading", total_size_bytes, downloaded_bytes: 0,
  started_at}``, or ``{"status": "already_downloaded"}`` when its model is in the catalogue; an unknown
  model (or quantization) is 404 ``model_not_found``. A job advances linearly over its ``seconds``
  (``bytes_per_second``, ``estimated_completion`` while ``downloading``), then is ``completed``
  (``completed_at``) and its model joins the catalogue (not loaded), polled or not; with ``fail_at``
  (a fraction) it stops there as ``failed``; with ``stall_at`` it stays ``downloading`` there, no
  further bytes.
* ``GET /api/v1/models/download/status/{job_id}``: the job as above; unknown: 404 ``job_not_found``.
* Control plane: ``POST /_fake/downloadable`` replaces the downloadable list (until reset) with
  ``[{"model", "key"?, "quantizations"?, "size_bytes"?, "seconds"?, "fail_at"?, "stall_at"?}]``
  (``key``: the catalogue id it becomes, default ``model``); reset restores ``DOWNLOADABLE`` and
  forgets every job.
"""

import argparse
import asyncio
import hashlib
import itertools
import math
import re
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field

import orjson
from aiohttp import web

MAX_RECORDED = 10_000
DEFAULT_CONTEXT = 4096
REASONING_TEXT = "Let me think."
TOOL_ARGS = '{"city": "Paris"}'
TOOL_CALL_ID = "call_abc123"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
EXTRA_KEYS = ("display_name", "params_string", "size_bytes", "reasoning", "instances")
STOP_REASONS = {"stop": "eosFound", "length": "maxPredictedTokensReached", "tool_calls": "toolCalls"}
NUMBER = (int, float)
SCRIPT_KEYS = {"reply": str, "tokens": int, "delay": NUMBER, "first_token_delay": NUMBER,
               "cut_after": int, "status": int, "error": str, "jit": bool, "load_delay": NUMBER,
               "load_error": str}
# What POST /api/v1/models/load accepts besides `model` (anything else is a 400, as a strict server
# would answer); all but echo_load_config end up in the instance's config.
LOAD_KEYS = {"context_length": int, "eval_batch_size": int, "num_experts": int, "flash_attention": bool,
             "offload_kv_cache_to_gpu": bool, "echo_load_config": bool}


# ---------------------------------------------------------------- catalogue

# id, type, arch, format, quantization, max context, capabilities, params, size in bytes
CATALOGUE = [
    ("qwen2.5-7b-instruct", "llm", "qwen2", "gguf", "Q4_K_M", 32768, ["tool_use"], "7B", 4_683_073_952),
    ("llama-3.2-1b-instruct", "llm", "llama", "gguf", "Q8_0", 131072, [], "1B", 1_321_083_168),
    ("qwen2-vl-2b-instruct", "vlm", "qwen2_vl", "gguf", "Q4_K_M", 32768, [], "2B", 1_272_936_128),
    ("text-embedding-nomic-embed-text-v1.5", "embeddings", "nomic-bert", "gguf", "Q4_K_M", 2048, [], None,
     84_106_624),
    ("qwen3-4b-thinking", "llm", "qwen3", "mlx", "4bit", 40960, ["tool_use"], "4B", 2_279_456_768),
]


def new_model(id, type="llm", arch="llama", compatibility_type="gguf", quantization="Q4_K_M",
              max_context_length=DEFAULT_CONTEXT, capabilities=(), params_string=None,
              size_bytes=1_000_000_000, **extra):
    """One catalogue entry: the /api/v0 object plus the EXTRA_KEYS."""
    model = {"id": id, "object": "model", "type": type, "publisher": "lmstudio-community", "arch": arch,
             "compatibility_type": compatibility_type, "quantization": quantization, "state": "not-loaded",
             "max_context_length": max_context_length, "capabilities": list(capabilities),
             "display_name": id, "params_string": params_string, "size_bytes": size_bytes,
             "reasoning": "thinking" in id, **extra, "instances": []}
    if model["state"] == "loaded":
        set_loaded(model, model.get("loaded_context_length"))
    return model


def default_catalogue():
    models = {row[0]: new_model(*row) for row in CATALOGUE}
    set_loaded(models["qwen2.5-7b-instruct"], 8192)
    return models


def set_loaded(model, context_length=None, **settings):
    """Load one more instance of `model`; returns its id (the model id, then `id:2`, `id:3`...)."""
    taken = {i["id"] for i in model["instances"]}
    names = itertools.chain([model["id"]], (f"{model['id']}:{k}" for k in itertools.count(2)))
    instance_id = next(n for n in names if n not in taken)
    config = {"context_length": context_length or min(DEFAULT_CONTEXT, model["max_context_length"])}
    if model["type"] != "embeddings":
        config.update(eval_batch_size=512, flash_attention=False, offload_kv_cache_to_gpu=True)
    model["instances"].append({"id": instance_id, "config": {**config, **settings}})
    sync_state(model)
    return instance_id


def set_unloaded(model, instance_id=None):
    """Unload one instance (or all)."""
    model["instances"] = [i for i in model["instances"] if instance_id not in (None, i["id"])]
    sync_state(model)


def sync_state(model):
    """/api/v0's view: loaded while any instance is, with the first instance's context."""
    model["state"] = "loaded" if model["instances"] else "not-loaded"
    model.pop("loaded_context_length", None)
    if model["instances"]:
        model["loaded_context_length"] = model["instances"][0]["config"]["context_length"]


def v0_model(model):
    return {k: v for k, v in model.items() if k not in EXTRA_KEYS}


def v1_model(model):
    quant = model["quantization"]
    bits = re.search(r"\d+", quant)
    return {
        "type": "embedding" if model["type"] == "embeddings" else "llm",
        "key": model["id"], "display_name": model["display_name"], "architecture": model["arch"],
        "quantization": {"name": quant, "bits_per_weight": int(bits.group()) if bits else None},
        "size_bytes": model["size_bytes"], "params_string": model["params_string"],
        "max_context_length": model["max_context_length"], "format": model["compatibility_type"],
        "capabilities": {"vision": model["type"] == "vlm",
                         "trained_for_tool_use": "tool_use" in model["capabilities"],
                         "reasoning": bool(model["reasoning"])},
        "loaded_instances": [dict(i) for i in model["instances"]],
    }


# ---------------------------------------------------------------- helpers

def json_response(data, status=200):
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error(status, message, **extra):
    return json_response({"error": {"message": message, "type": "invalid_request_error", **extra}},
                         status)


def model_not_found(model_id, message=None):
    return error(404, message or f"Model '{model_id}' not found", param="model",
                 code="model_not_found")


def tokenize(text):
    """Split at spaces, keeping each space with the following word (lossless)."""
    return re.findall(r"\s*\S+|\s+", text)


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def embed(text):
    vector = [b / 127.5 - 1.0 for b in hashlib.sha256(text.encode()).digest()[:8]]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def sse(payload):
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def token_logprob(token):
    """A deterministic log probability for a token: its SHA-256 read as a number in (-4, 0]."""
    return -round(int(hashlib.sha256(token.encode()).hexdigest()[:4], 16) / 65535 * 4, 4)


def alternatives(token, top):
    """The token and its top-1 alternatives, as (token, logprob)."""
    value = token_logprob(token)
    return [(token, value)] + [(f"{token}~{k}", round(value - k, 4)) for k in range(1, top)]


def chat_logprobs(tokens, body):
    """A chat choice's `logprobs` for `tokens`, or None when the request did not ask."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs") or 0

    def entry(token, value):
        return {"token": token, "logprob": value, "bytes": list(token.encode())}

    return {"content": [{**entry(t, token_logprob(t)), "top_logprobs": [entry(*a) for a in alternatives(t, top)]}
                        for t in tokens], "refusal": None}


def completion_logprobs(tokens, body, offset=0):
    """A text completion's legacy `logprobs` (`logprobs: N` alternatives), or None when not asked."""
    top = body.get("logprobs")
    if top is None or top is False:
        return None
    top = 0 if top is True else int(top)
    offsets = [offset + sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    return {"tokens": list(tokens), "token_logprobs": [token_logprob(t) for t in tokens],
            "top_logprobs": [dict(alternatives(t, top)) for t in tokens] if top else None,
            "text_offset": offsets}


@dataclass
class Plan:
    """What a generation emits: reasoning tokens, then content tokens or tool-call fragments."""
    content: list
    reasoning: list = field(default_factory=list)
    tool_name: str | None = None
    finish: str = "stop"
    prompt_tokens: int = 0

    @property
    def completion_tokens(self):
        return len(self.reasoning) + len(self.content)

    def usage(self):
        n = self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": n,
                "total_tokens": self.prompt_tokens + n}


# ---------------------------------------------------------------- server

class FakeLMStudio:
    def __init__(self):
        self.requests = deque(maxlen=MAX_RECORDED)
        self.open_streams = 0
        self.closed_by_client = 0
        self.served = {}  # instance id -> generation requests it served
        self.ids = itertools.count(1)
        self.downloads = Downloads(self)
        self.reset()

    def reset(self):
        self.requests.clear()
        self.script = {}
        self.models = default_catalogue()
        self.closed_by_client = 0
        self.downloads.reset()
        self.served = {}

    def app(self):
        @web.middleware
        async def record(request, handler):
            if not request.path.startswith("/_fake/"):
                body, _ = await read_json(request)
                self.requests.append({"method": request.method, "path": request.path,
                                      "headers": {k.lower(): v for k, v in request.headers.items()},
                                      "json": body})
            return await handler(request)

        app = web.Application(middlewares=[record], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/v1/models", self.v1_models)
        r.add_get("/api/v0/models", self.v0_models)
        r.add_get("/api/v0/models/{id:.*}", self.v0_model)
        r.add_get("/api/v1/models", self.native_models)
        r.add_post("/api/v1/models/load", self.load)
        r.add_post("/api/v1/models/unload", self.unload)
        for prefix in ("/v1", "/api/v0"):
            r.add_post(f"{prefix}/chat/completions", self.chat)
            r.add_post(f"{prefix}/completions", self.completions)
            r.add_post(f"{prefix}/embeddings", self.embeddings)
        r.add_get("/_fake/requests", self.fake_requests)
        r.add_get("/_fake/stats", self.fake_stats)
        r.add_get("/_fake/served", self.fake_served)
        r.add_post("/_fake/reset", self.fake_reset)
        r.add_post("/_fake/script", self.fake_script)
        r.add_post("/_fake/models", self.fake_models)
        self.downloads.add_routes(r)
        r.add_route("*", "/{tail:.*}", self.unexpected)
        return app

    # --- control plane

    async def fake_requests(self, request):
        return json_response(list(self.requests))

    async def fake_stats(self, request):
        return json_response({"open_streams": self.open_streams, "closed_by_client": self.closed_by_client})

    async def fake_served(self, request):
        return json_response(self.served)

    async def fake_reset(self, request):
        self.reset()
        return json_response({"ok": True})

    async def fake_script(self, request):
        body, err = await json_body(request)
        if err:
            return err
        bad = [k for k, v in body.items() if k not in SCRIPT_KEYS or not isinstance(v, SCRIPT_KEYS[k])]
        if bad:
            return error(400, f"bad script keys: {bad}; allowed: {sorted(SCRIPT_KEYS)}")
        self.script = body
        return json_response({"ok": True, "script": body})

    async def fake_models(self, request):
        body, _ = await read_json(request)
        if not isinstance(body, list) or not all(isinstance(m, dict) and "id" in m for m in body):
            return error(400, "expected a list of model objects with an 'id'")
        self.models = {m["id"]: new_model(**m) for m in body}
        return json_response({"ok": True})

    # --- LM Studio: models

    async def v1_models(self, request):
        data = [{"id": m, "object": "model", "owned_by": "organization_owner"} for m in self.models]
        return json_response({"object": "list", "data": data})

    async def v0_models(self, request):
        return json_response({"object": "list", "data": [v0_model(m) for m in self.models.values()]})

    async def v0_model(self, request):
        model_id = request.match_info["id"]
        model = self.models.get(model_id)
        return json_response(v0_model(model)) if model else model_not_found(model_id)

    async def native_models(self, request):
        return json_response({"models": [v1_model(m) for m in self.models.values()]})

    async def load(self, request):
        body, err = await json_body(request)
        if err:
            return err
        model = self.models.get(body.get("model"))
        if model is None:
            return model_not_found(body.get("model"))
        bad = [k for k, v in body.items() if k != "model" and (k not in LOAD_KEYS or not isinstance(v, LOAD_KEYS[k]))]
        if bad:
            return error(400, f"Unrecognized or invalid key(s) in load request: {', '.join(bad)}")
        started = time.monotonic()
        await asyncio.sleep(self.script.get("load_delay", 0))
        if self.script.get("load_error"):
            return error(500, self.script["load_error"])
        settings = {k: v for k, v in body.items() if k in LOAD_KEYS and k != "echo_load_config"}
        instance_id = set_loaded(model, **settings)
        answer = {"type": v1_model(model)["type"], "instance_id": instance_id,
                  "load_time_seconds": round(time.monotonic() - started, 3), "status": "loaded"}
        if body.get("echo_load_config"):
            answer["load_config"] = next(i["config"] for i in model["instances"] if i["id"] == instance_id)
        return json_response(answer)

    async def unload(self, request):
        body, err = await json_body(request)
        if err:
            return err
        instance_id = body.get("instance_id")
        model, _ = self.find(instance_id)
        if model is None or instance_id not in {i["id"] for i in model["instances"]}:
            return model_not_found(instance_id, f"No loaded model instance '{instance_id}'")
        set_unloaded(model, instance_id)
        return json_response({"instance_id": instance_id})

    def find(self, name):
        """(model, loaded instance id or None) for a model id or a loaded instance's id."""
        if not isinstance(name, str):
            return None, None
        if name in self.models:
            model = self.models[name]
            return model, model["instances"][0]["id"] if model["instances"] else None
        for model in self.models.values():
            if any(i["id"] == name for i in model["instances"]):
                return model, name
        return None, None

    async def unexpected(self, request):
        return json_response({"error": f"Unexpected endpoint or method. ({request.method} {request.path})"})

    # --- LM Studio: generation

    def admit(self, body, embeddings=False):
        """Return an error response, or None after JIT-loading the requested model."""
        if not embeddings and self.script.get("status"):
            return json_response({"error": {"message": self.script.get("error", "scripted error")}},
                                 self.script["status"])
        model_id = body.get("model")
        model, instance_id = self.find(model_id)
        if model is None:
            return model_not_found(model_id, f'Model "{model_id}" not found. '
                                             "Please load it first or enable JIT.")
        if (model["type"] == "embeddings") != embeddings:
            kind = "an embedding model" if embeddings else "a text generation model"
            return error(400, f'Model "{model_id}" is not {kind}', param="model")
        if instance_id is None:
            if not self.script.get("jit", True):
                return error(400, f'Model "{model_id}" is not loaded. '
                                  "Please load it with lms load or enable JIT.", param="model")
            instance_id = set_loaded(model)
        self.served[instance_id] = self.served.get(instance_id, 0) + 1
        return None

    def reply_tokens(self, default_text, body):
        """Content tokens and finish reason, honouring the script and max_tokens."""
        if "tokens" in self.script:
            tokens = [f"{' ' if i else ''}tok{i}" for i in range(self.script["tokens"])]
        else:
            tokens = tokenize(self.script.get("reply", default_text))
        limit = body.get("max_tokens")
        if isinstance(limit, int) and 0 <= limit < len(tokens):
            return tokens[:limit], "length"
        return tokens, "stop"

    def chat_plan(self, body):
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        last = messages[-1] if messages else {}
        user = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        prompt_tokens = sum(len(text_of(m.get("content")).split()) for m in messages)
        model, _ = self.find(body["model"])
        reasoning = tokenize(REASONING_TEXT) if model["reasoning"] else []
        tools = body.get("tools") or []
        if tools and last.get("role") != "tool" and re.search(r"\bweather\b", user, re.I):
            name = (tools[0].get("function") or {}).get("name", "tool")
            pieces = [TOOL_ARGS[i:i + 4] for i in range(0, len(TOOL_ARGS), 4)]
            return Plan(pieces, reasoning, name, "tool_calls", prompt_tokens)
        if last.get("role") == "tool":
            text = f"The tool said: {text_of(last.get('content'))}"
        else:
            text = f"Hello from {body['model']}! You said: {user}"
        content, finish = self.reply_tokens(text, body)
        return Plan(content, reasoning, None, finish, prompt_tokens)

    def stats(self, plan):
        n = plan.completion_tokens
        generation_time = n * (self.script.get("delay") or 0.001)
        return {"tokens_per_second": round(n / generation_time, 3) if n else 0.0,
                "time_to_first_token": self.script.get("first_token_delay") or 0.001,
                "generation_time": generation_time, "stop_reason": STOP_REASONS[plan.finish]}

    def v0_extras(self, request, model_id):
        if not request.path.startswith("/api/v0/"):
            return {}
        m, _ = self.find(model_id)
        info = {"arch": m["arch"], "quant": m["quantization"], "format": m["compatibility_type"],
                "context_length": m.get("loaded_context_length")}
        runtime = {"name": "llama.cpp-linux-x86_64", "version": "1.0.0", "supported_formats": ["gguf"]}
        return {"model_info": info, "runtime": runtime}

    async def chat(self, request):
        body, err = await json_body(request)
        if err or (err := self.admit(body)):
            return err
        plan = self.chat_plan(body)
        model, created, cid = body["model"], int(time.time()), f"chatcmpl-{next(self.ids):08d}"
        if body.get("stream"):
            return await self.stream(request, body, *self.chat_chunks(plan, cid, created, model, body))
        message = {"role": "assistant", "content": "".join(plan.content)}
        if plan.reasoning:
            message["reasoning"] = "".join(plan.reasoning)
        if plan.tool_name:
            message["content"] = ""
            message["tool_calls"] = [{"id": TOOL_CALL_ID, "type": "function",
                                      "function": {"name": plan.tool_name, "arguments": TOOL_ARGS}}]
        logprobs = None if plan.tool_name else chat_logprobs(plan.content, body)
        choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": plan.finish}
        return await self.respond(request, plan, {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [choice], "system_fingerprint": model})

    def chat_chunks(self, plan, cid, created, model, body):
        """(token chunks as (payload, counts_as_content), finish chunk, usage chunk)."""
        def chunk(delta, finish=None):
            logprobs = chat_logprobs([delta["content"]], body) if delta.get("content") else None
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "system_fingerprint": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

        deltas = [({"reasoning": t}, False) for t in plan.reasoning]
        if plan.tool_name:
            call = {"index": 0, "id": TOOL_CALL_ID, "type": "function",
                    "function": {"name": plan.tool_name, "arguments": ""}}
            deltas.append(({"tool_calls": [call]}, False))
            deltas += [({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}, True)
                       for p in plan.content]
        else:
            deltas += [({"content": t}, True) for t in plan.content]
        first, counts = deltas[0] if deltas else ({"content": ""}, False)
        deltas[:1] = [({"role": "assistant", **first}, counts)]
        usage = {**chunk({}), "choices": [], "usage": plan.usage()}
        return [(chunk(d), c) for d, c in deltas], chunk({}, plan.finish), usage

    async def completions(self, request):
        body, err = await json_body(request)
        if err or (err := self.admit(body)):
            return err
        prompt = body.get("prompt")
        prompt = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
        content, finish = self.reply_tokens(f"Completion for: {prompt}", body)
        plan = Plan(content, finish=finish, prompt_tokens=len(prompt.split()))
        model, created, cid = body["model"], int(time.time()), f"cmpl-{next(self.ids):08d}"

        def chunk(text, finish=None, tokens=(), offset=0):
            logprobs = completion_logprobs(tokens, body, offset) if tokens else None
            return {"id": cid, "object": "text_completion", "created": created, "model": model,
                    "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}]}

        if body.get("stream"):
            usage = {**chunk(""), "choices": [], "usage": plan.usage()}
            offsets = [sum(len(t) for t in content[:i]) for i in range(len(content))]
            return await self.stream(request, body, [(chunk(t, tokens=[t], offset=o), True)
                                                     for t, o in zip(content, offsets)], chunk("", finish), usage)
        return await self.respond(request, plan, chunk("".join(content), finish, tokens=content))

    async def respond(self, request, plan, result):
        """A non-streamed answer: wait as long as the stream would take, honour cut_after."""
        delay = self.script.get("delay", 0) * max(plan.completion_tokens - 1, 0)
        if (total := self.script.get("first_token_delay", 0) + delay) > 0:
            await asyncio.sleep(total)
        cut_after = self.script.get("cut_after")
        if cut_after is not None and cut_after <= len(plan.content):
            return abort(request)
        return json_response({**result, "usage": plan.usage(), "stats": self.stats(plan),
                              **self.v0_extras(request, result["model"])})

    async def embeddings(self, request):
        body, err = await json_body(request)
        if err or (err := self.admit(body, embeddings=True)):
            return err
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []]
        data = [{"object": "embedding", "embedding": embed(t), "index": i} for i, t in enumerate(inputs)]
        words = sum(len(t.split()) for t in inputs)
        return json_response({"object": "list", "data": data, "model": body["model"],
                              "usage": {"prompt_tokens": words, "total_tokens": words}})

    # --- streaming

    async def stream(self, request, body, chunks, finish, usage):
        """Write an SSE stream; count clients that leave early; honour delay/cut_after.

        chunks are (payload, counts_as_content); finish and usage are the closing chunks.
        """
        tail = [finish, usage] if (body.get("stream_options") or {}).get("include_usage") else [finish]
        delay, first_delay = self.script.get("delay", 0), self.script.get("first_token_delay", 0)
        cut_after = self.script.get("cut_after")
        response = web.StreamResponse(headers=SSE_HEADERS)
        self.open_streams += 1
        try:
            await response.prepare(request)
            sent = 0
            for i, (payload, is_content) in enumerate(chunks):
                if cut_after is not None and sent >= cut_after:
                    return abort(request, response)
                if pause := (delay if i else first_delay):
                    await asyncio.sleep(pause)
                await response.write(sse(payload))
                sent += is_content
            if cut_after is not None and sent >= cut_after:
                return abort(request, response)
            for payload in tail:
                await response.write(sse(payload))
            await response.write(b"data: [DONE]\n\n")
            return response
        except ConnectionError:  # the client went away: the write failed
            self.closed_by_client += 1
            return response
        except asyncio.CancelledError:
            self.closed_by_client += 1
            raise
        finally:
            self.open_streams -= 1


def abort(request, response=None):
    """Close the connection after flushing what was written (no [DONE], no final chunk)."""
    if request.transport is not None:
        request.transport.close()
    return response or web.Response()


async def read_json(request):
    """(parsed body or None, error message or None); cached on the request."""
    if "json" not in request:
        body = await request.read()
        try:
            request["json"], request["json_error"] = (orjson.loads(body) if body else None), None
        except orjson.JSONDecodeError as exc:
            request["json"], request["json_error"] = None, f"Invalid JSON in request body: {exc}"
    return request["json"], request["json_error"]


async def json_body(request):
    """(JSON object, None) or (None, 400 error response)."""
    body, problem = await read_json(request)
    if problem is None and not isinstance(body, dict):
        problem = "Request body must be a JSON object"
    return (body, None) if problem is None else (None, error(400, problem))


# ---------------------------------------------------------------- downloads (LM Studio 0.4)

# What the fake can download: catalog ids and Hugging Face links (see the module docstring).
DOWNLOADABLE = [
    {"model": "google/gemma-3-1b", "size_bytes": 719_881_216, "seconds": 2.0, "arch": "gemma3",
     "params_string": "1B"},
    {"model": "https://huggingface.co/lmstudio-community/Qwen3-0.6B-GGUF", "key": "qwen3-0.6b",
     "quantizations": ["Q4_K_M", "Q8_0"], "size_bytes": 639_446_688, "seconds": 2.0, "arch": "qwen3"},
    {"model": "broken/fails-halfway", "size_bytes": 1_000_000_000, "seconds": 2.0, "fail_at": 0.5},
    {"model": "slow/stalls-halfway", "size_bytes": 1_000_000_000, "seconds": 2.0, "stall_at": 0.5},
]
MODEL_KEYS = {"arch", "params_string", "size_bytes"}


def iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}Z"


@dataclass
class DownloadJob:
    id: str
    spec: dict
    quantization: str | None
    started: float = field(default_factory=time.time)
    timer: object = None

    def state(self, now=None):
        """LM Studio's status object for this job at `now`."""
        spec, total = self.spec, self.spec.get("size_bytes", 1_000_000_000)
        seconds = spec.get("seconds", 2.0)
        fraction = min(((now or time.time()) - self.started) / seconds, 1.0)
        status = "completed" if fraction >= 1 else "downloading"
        if spec.get("fail_at") is not None and fraction >= spec["fail_at"]:
            fraction, status = spec["fail_at"], "failed"
        elif spec.get("stall_at") is not None and fraction >= spec["stall_at"]:
            fraction, status = spec["stall_at"], "downloading"
        body = {"job_id": self.id, "status": status, "total_size_bytes": total,
                "downloaded_bytes": int(total * fraction), "started_at": iso(self.started)}
        if status == "downloading":
            body["bytes_per_second"] = 0.0 if spec.get("stall_at") == fraction else total / seconds
            body["estimated_completion"] = iso(self.started + seconds)
        if status == "completed":
            body["completed_at"] = iso(self.started + seconds)
        return body


class Downloads:
    """LM Studio's download API: jobs that advance with time and add their model to the catalogue."""

    def __init__(self, fake):
        self.fake = fake
        self.jobs = {}
        self.ids = itertools.count(1)

    def reset(self):
        for job in self.jobs.values():
            if job.timer:
                job.timer.cancel()
        self.jobs = {}
        self.downloadable = [dict(spec) for spec in DOWNLOADABLE]

    def add_routes(self, r):
        r.add_post("/api/v1/models/download", self.start)
        r.add_get("/api/v1/models/download/status/{job_id}", self.status)
        r.add_post("/_fake/downloadable", self.set_downloadable)

    async def set_downloadable(self, request):
        body, _ = await read_json(request)
        if not isinstance(body, list) or not all(isinstance(m, dict) and "model" in m for m in body):
            return error(400, "expected a list of {model, key?, quantizations?, size_bytes?, seconds?, "
                              "fail_at?, stall_at?}")
        self.downloadable = body
        return json_response({"ok": True})

    def find(self, model):
        wanted = model.rstrip("/").lower() if isinstance(model, str) else None
        return next((s for s in self.downloadable if s["model"].rstrip("/").lower() == wanted), None)

    async def start(self, request):
        body, err = await json_body(request)
        if err:
            return err
        model, quantization = body.get("model"), body.get("quantization")
        if not isinstance(model, str) or not model:
            return error(400, "'model' is required", param="model")
        hugging_face = model.lower().startswith("https://huggingface.co/")
        if quantization is not None and not hugging_face:
            return error(400, "'quantization' is only supported for Hugging Face links", param="quantization")
        spec = self.find(model)
        if spec is None:
            return model_not_found(model, f"Could not find model '{model}' in the catalog or on Hugging Face")
        if quantization is not None and quantization not in spec.get("quantizations", ()):
            return model_not_found(model, f"No quantization '{quantization}' of '{model}' (available: "
                                          f"{', '.join(spec.get('quantizations', ()))})")
        if spec.get("key", spec["model"]) in self.fake.models:
            return json_response({"status": "already_downloaded"})
        job = DownloadJob(f"job_{next(self.ids):010x}", spec, quantization)
        self.jobs[job.id] = job
        if spec.get("fail_at") is None and spec.get("stall_at") is None:
            job.timer = asyncio.get_running_loop().call_later(spec.get("seconds", 2.0), self.finish, job)
        return json_response(job.state(job.started))

    def finish(self, job):
        spec = job.spec
        extra = {k: spec[k] for k in MODEL_KEYS if k in spec}
        self.fake.models[spec.get("key", spec["model"])] = new_model(
            spec.get("key", spec["model"]), quantization=job.quantization or "Q4_K_M", **extra)

    async def status(self, request):
        job = self.jobs.get(request.match_info["job_id"])
        if job is None:
            return error(404, f"No download job '{request.match_info['job_id']}'", code="job_not_found")
        return json_response(job.state())


# ---------------------------------------------------------------- process

async def serve(host, port):
    runner = web.AppRunner(FakeLMStudio().app(), access_log=None, shutdown_timeout=0.25)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock).start()
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main():
    parser = argparse.ArgumentParser(description="Fake LM Studio server (test double).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1234, help="0 picks a free port")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
