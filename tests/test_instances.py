"""Load settings in process (respx standing in for LM Studio): an LM Studio without /api/v1 keeps
JIT with a warning, `manage.py check` says where load settings do not apply, a request that falls back
to another backend goes there with the plain model id, and the admin stores, exports and imports the
settings like routes.yaml."""
import io

import httpx
import orjson
import pytest
from django.core.management import call_command
from django.test import AsyncClient

from routing.config.loader import load_routes
from routing.core.exchange import Exchange
from routing.models import Alias
from routing.proxy.state import current
from tests.conftest import use_state

ROUTES = """
defaults:
  ttl: 10m
aliases:
  long: {model: qwen2.5-7b-instruct, context_length: 65536, flash_attention: true, num_ctx_max: 131072}
  plain: qwen2.5-7b-instruct
"""
REPLY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
V0 = {"object": "list", "data": [{"id": "qwen2.5-7b-instruct", "type": "llm", "state": "not-loaded",
                                  "max_context_length": 32768}]}


@pytest.fixture
def routes(routes_file, settings):
    routes_file.write_text(ROUTES)
    use_state(settings)
    yield routes_file


@pytest.mark.anyio
async def test_an_lmstudio_without_api_v1_serves_the_alias_by_jit_with_a_warning(upstream_mock, routes,
                                                                                  caplog):
    upstream_mock.get("/api/v0/models").mock(return_value=httpx.Response(200, json=V0))
    load = upstream_mock.post("/api/v1/models/load").mock(return_value=httpx.Response(200, json={}))
    chat = upstream_mock.post("/v1/chat/completions").mock(return_value=httpx.Response(200, json=REPLY))
    for _ in range(2):
        r = await AsyncClient().post("/v1/chat/completions", {"model": "long", "messages": [
            {"role": "user", "content": "x"}]}, content_type="application/json")
        assert r.status_code == 200
    assert not load.called
    assert [orjson.loads(call.request.content)["model"] for call in chat.calls] == ["qwen2.5-7b-instruct"] * 2
    warnings = [r.getMessage() for r in caplog.records if "load settings do not apply" in r.getMessage()]
    assert len(warnings) == 1 and "backend 'default' has no /api/v1" in warnings[0]


def test_manage_py_check_says_load_settings_are_not_applicable_without_api_v1(upstream_mock, routes):
    from routing.checks import check_load_settings

    [warning] = check_load_settings()
    assert warning.id == "routing.W002"
    assert warning.msg == ("load settings of 'long' on backend 'default' (http://lmstudio.test): not "
                           "applicable, this LM Studio has no /api/v1 (LM Studio 0.4+); requests are "
                           "loaded by its JIT default instead")
    upstream_mock.get("/api/v1/models").mock(return_value=httpx.Response(200, json={"models": []}))
    assert check_load_settings() == []


def test_manage_py_check_asks_lmstudio_nothing_unless_told_to(upstream_mock, routes):
    """`manage.py check` runs before every `migrate` and `runserver`: it must not call LM Studio. The
    check that does is tagged `lmstudio` and runs only with --deploy."""
    from django.core.management import call_command

    call_command("check")
    assert not upstream_mock.calls
    with pytest.raises(Exception, match="routing.W002"):  # a warning, made an error by --fail-level
        call_command("check", "--deploy", "--tag", "lmstudio", "--fail-level", "WARNING")
    assert [call.request.url.path for call in upstream_mock.calls] == ["/api/v1/models"]


def test_manage_py_check_asks_nothing_when_no_alias_has_load_settings(upstream_mock, routes, settings):
    from routing.checks import check_load_settings

    routes.write_text("aliases: {plain: qwen2.5-7b-instruct}\n")
    use_state(settings)
    assert check_load_settings() == [] and not upstream_mock.calls


@pytest.mark.parametrize("instance, backend, expected", [
    (None, "a", "m:2"),                # no instance chosen: the body as built
    (("a", "m:2", "m"), "a", "m:2"),   # the backend the instance was chosen on
    (("a", "m:2", "m"), "b", "m"),     # another one (fallback): the plain model id
])
def test_a_request_that_falls_back_goes_with_the_plain_model_id(instance, backend, expected):
    exchange = Exchange("ollama", "/api/chat", instance=instance)
    assert exchange.body_for(backend, {"model": "m:2", "ttl": 5}) == {"model": expected, "ttl": 5}


def test_the_admin_stores_exports_and_imports_load_settings_like_routes_yaml(routes, tmp_path):
    stored = Alias(name="agent", model="llama-3.2-1b-instruct", context_length=32768,
                   offload_kv_cache_to_gpu=False, num_ctx_max=65536)
    stored.full_clean()
    stored.save()
    table = current().registry.current_table()
    agent = table.aliases["agent"]
    assert (agent.context_length, agent.offload_kv_cache_to_gpu, agent.num_ctx_max) == (32768, False, 65536)
    exported = current().registry.export_yaml()
    again = load_routes(io.StringIO(exported), "export.yaml")
    assert again.aliases["long"].context_length == 65536 and again.aliases["long"].flash_attention is True
    assert again.aliases["agent"].num_ctx_max == 65536 and again.aliases["plain"].context_length is None
    Alias.objects.all().delete()
    path = tmp_path / "exported.yaml"
    path.write_text(exported)
    call_command("routes", "import", str(path))
    imported = Alias.objects.get(name="long")
    assert (imported.context_length, imported.flash_attention, imported.num_ctx_max) == (65536, True, 131072)


def test_the_admin_refuses_load_settings_the_loader_refuses(routes):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        Alias(name="zero", model="m", context_length=0).full_clean()
    assert refused.value.message_dict["context_length"] == [
        "alias 'zero': 'context_length' must be a positive whole number, got 0"]
