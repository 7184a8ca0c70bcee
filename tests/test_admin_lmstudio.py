"""The admin's calls to LM Studio (model picker, "test this alias"), with respx standing in for it."""
import httpx
import orjson

from adminui import lmstudio
from routing.config.table import Defaults, Route, RouteAlias

ROUTE = Route(requested="fast", model="llama-3.2-1b-instruct",
              alias=RouteAlias(name="fast", model="llama-3.2-1b-instruct", temperature=0.3, system="Be brief."))


def test_the_model_picker_lists_lmstudio_models(upstream_mock):
    upstream_mock.get("/api/v0/models").mock(return_value=httpx.Response(
        200, json={"data": [{"id": "b-model"}, {"id": "a-model"}]}))
    assert lmstudio.model_ids() == (["a-model", "b-model"], "")


def test_the_model_picker_explains_an_unreachable_lmstudio(upstream_mock):
    upstream_mock.get("/api/v0/models").mock(side_effect=httpx.ConnectError("refused"))
    ids, message = lmstudio.model_ids()
    assert ids == [] and "cannot reach LM Studio" in message and "type the model id" in message


def test_testing_an_alias_sends_its_overrides_and_shows_the_answer(upstream_mock):
    route = upstream_mock.post("/v1/chat/completions").mock(return_value=httpx.Response(
        200, json={"choices": [{"message": {"role": "assistant", "content": "Hello there, friend!"}}]}))
    result = lmstudio.try_route(ROUTE, Defaults(ttl=600))
    assert (result.answer, result.error) == ("Hello there, friend!", "")
    sent = orjson.loads(route.calls.last.request.content)
    assert (sent["model"], sent["temperature"], sent["ttl"], sent["stream"]) == (
        "llama-3.2-1b-instruct", 0.3, 600, False)
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}


def test_testing_an_alias_shows_lmstudio_s_error(upstream_mock):
    upstream_mock.post("/v1/chat/completions").mock(return_value=httpx.Response(
        404, json={"error": {"message": "no such model", "code": "model_not_found"}}))
    result = lmstudio.try_route(ROUTE, Defaults())
    assert result.answer == "" and result.error == "model 'llama-3.2-1b-instruct' not found"
