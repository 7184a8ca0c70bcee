"""/api/copy and /api/delete edit the admin's store; the model lists show the effective aliases."""
import httpx
import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from routing.models import Alias

pytestmark = [pytest.mark.anyio, pytest.mark.django_db(transaction=True)]

LM_MODELS = {"data": [{"id": "qwen2.5-7b-instruct", "type": "llm"}, {"id": "llama-3.2-1b-instruct"}]}


@pytest.fixture
def lmstudio(upstream_mock):
    upstream_mock.get("/api/v0/models").mock(return_value=httpx.Response(200, json=LM_MODELS))
    return upstream_mock


async def post(path: str, body: dict, method: str = "post"):
    client = AsyncClient()
    return await getattr(client, method)(path, orjson.dumps(body), content_type="application/json")


def stored() -> dict:
    return {a.name: a for a in Alias.objects.all()}


async def test_copy_of_an_alias_stores_its_settings_under_the_new_name(lmstudio, routes_file):
    r = await post("/api/copy", {"source": "coder:latest", "destination": "coder2:latest"})
    assert r.status_code == 200
    copy = (await sync_to_async(stored)())["coder2"]
    assert (copy.model, copy.ttl, copy.temperature, copy.system, copy.options) == (
        "qwen2.5-7b-instruct", 1800, 0.2, "You are terse.", {"top_p": 0.9})
    tags = orjson.loads((await AsyncClient().get("/api/tags")).content)
    assert "coder2:latest" in [m["name"] for m in tags["models"]]


async def test_copy_of_a_passthrough_model_creates_a_plain_alias(lmstudio, routes_file):
    r = await post("/api/copy", {"source": "llama-3.2-1b-instruct", "destination": "small"})
    assert r.status_code == 200
    small = (await sync_to_async(stored)())["small"]
    assert (small.model, small.temperature, small.options) == ("llama-3.2-1b-instruct", None, {})


async def test_copy_over_an_existing_admin_alias_replaces_it(lmstudio, routes_file):
    await post("/api/copy", {"source": "tiny", "destination": "x"})
    await post("/api/copy", {"source": "coder", "destination": "x"})
    assert (await sync_to_async(stored)())["x"].model == "qwen2.5-7b-instruct"


@pytest.mark.parametrize("body, status, message", [
    ({"source": "nope", "destination": "x"}, 404, "model 'nope' not found"),
    ({"destination": "x"}, 400, "source is required"),
    ({"source": "coder", "destination": 3}, 400, "destination must be a non-empty string"),
    ({"source": "coder", "destination": ":latest"}, 400, "destination must be a non-empty string"),
])
async def test_copy_errors_name_the_field_or_the_model(lmstudio, routes_file, body, status, message):
    r = await post("/api/copy", body)
    assert (r.status_code, orjson.loads(r.content)) == (status, {"error": message})
    assert not await Alias.objects.aexists()


async def test_delete_removes_an_admin_alias(lmstudio, routes_file):
    await post("/api/copy", {"source": "tiny", "destination": "gone"})
    r = await post("/api/delete", {"model": "gone:latest"}, "delete")
    assert r.status_code == 200 and not await Alias.objects.aexists()
    r = await post("/api/delete", {"name": "gone"}, "delete")
    assert (r.status_code, orjson.loads(r.content)) == (404, {"error": "model 'gone' not found"})


async def test_deleting_an_override_brings_back_the_file_alias(lmstudio, routes_file):
    await post("/api/copy", {"source": "tiny", "destination": "coder"})
    show = orjson.loads((await post("/api/show", {"model": "coder"})).content)
    assert "FROM llama-3.2-1b-instruct" in show["modelfile"]
    assert (await post("/api/delete", {"model": "coder"}, "delete")).status_code == 200
    show = orjson.loads((await post("/api/show", {"model": "coder"})).content)
    assert "FROM qwen2.5-7b-instruct" in show["modelfile"]


async def test_a_file_alias_cannot_be_deleted_through_the_api(lmstudio, routes_file):
    r = await post("/api/delete", {"model": "coder"}, "delete")
    assert r.status_code == 409
    message = orjson.loads(r.content)["error"]
    assert "alias 'coder' is defined in routes.yaml" in message and "remove it from that file" in message


async def test_delete_without_a_model_is_a_400(lmstudio, routes_file):
    r = await post("/api/delete", {}, "delete")
    assert (r.status_code, orjson.loads(r.content)) == (400, {"error": "model is required"})


async def test_model_lists_show_admin_aliases_and_hide_disabled_ones(lmstudio, routes_file):
    await Alias.objects.acreate(name="fresh", model="llama-3.2-1b-instruct")
    await Alias.objects.acreate(name="sleeping", model="llama-3.2-1b-instruct", enabled=False)
    tags = [m["name"] for m in orjson.loads((await AsyncClient().get("/api/tags")).content)["models"]]
    assert "fresh:latest" in tags and "sleeping:latest" not in tags
    ids = [m["id"] for m in orjson.loads((await AsyncClient().get("/v1/models")).content)["data"]]
    assert "fresh" in ids and "coder" in ids and "sleeping" not in ids
    show = orjson.loads((await post("/api/show", {"model": "fresh"})).content)
    assert show["model_info"]["general.basename"] == "fresh"
