"""Sampling parameters and message roles are checked before anything reaches LM Studio: a 400 naming
the field, in both dialects."""
import pytest

from routing.config.overrides import check_params
from routing.core.errors import BadRequest
from routing.dialects.ollama import chat_to_openai
from routing.dialects.openai_chat import check_chat, check_completion

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("params", [
    {}, {"temperature": 0}, {"temperature": 1.5, "top_p": 1, "top_k": 40, "min_p": 0.05},
    {"max_tokens": -1}, {"max_tokens": 4096}, {"seed": -5}, {"stop": "x"}, {"stop": ["a", "b"]},
    {"stop": None, "temperature": None}, {"frequency_penalty": -2, "presence_penalty": 2},
    {"unknown_to_us": "passed on"},
])
def test_it_accepts_sensible_sampling_parameters(params):
    check_params(params)


@pytest.mark.parametrize("params, message", [
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"temperature": True}, "temperature must be a number"),
    ({"temperature": -1}, "temperature must be between 0 and 100, got -1"),
    ({"top_p": 1.5}, "top_p must be between 0 and 1"),
    ({"max_tokens": 2.5}, "max_tokens must be a whole number"),
    ({"max_tokens": 10 ** 12}, "max_tokens must be between"),
    ({"top_k": -3}, "top_k must be between"),
    ({"seed": 2 ** 70}, "seed must be between"),
    ({"stop": [1]}, "stop must be a string or a list of strings"),
    ({"temperature": 1e308}, "temperature must be between"),
])
def test_it_refuses_absurd_sampling_parameters_naming_them(params, message):
    with pytest.raises(BadRequest) as info:
        check_params(params)
    assert message in info.value.message


def test_ollama_options_are_named_as_the_client_sent_them():
    with pytest.raises(BadRequest) as info:
        chat_to_openai({"model": "m", "messages": USER, "options": {"num_predict": 0.5}})
    assert info.value.message == "options: num_predict must be a whole number"


@pytest.mark.parametrize("check, body, message", [
    (check_chat, {"messages": [{"role": "wizard", "content": "x"}]},
     "messages[0].role must be one of system, user, assistant, tool, developer, got 'wizard'"),
    (check_chat, {"messages": ["hi"]}, "messages[0].role must be one of"),
    (check_chat, {"messages": USER, "tools": {"a": 1}}, "tools must be a list"),
    (check_chat, {"messages": USER, "stream": True, "stream_options": True}, "stream_options must be an object"),
    (check_chat, {"messages": USER, "top_p": 7}, "top_p must be between 0 and 1"),
    (check_completion, {"prompt": "x", "max_tokens": "many"}, "max_tokens must be a number"),
])
def test_openai_requests_with_bad_fields_are_refused_naming_the_field(check, body, message):
    with pytest.raises(BadRequest) as info:
        check(body)
    assert message in info.value.message
