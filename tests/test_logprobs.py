"""Log probabilities on Ollama's side (routing/dialects/logprobs.py and the Ollama translator): asked of
LM Studio with OpenAI's fields, and LM Studio's answer in Ollama's shape on each chunk and on the whole
answer; none from LM Studio is no field, never an error."""
import pytest

from routing.core.errors import BadRequest
from routing.core.exchange import Timing
from routing.dialects.logprobs import logprob_params, ollama_logprobs
from routing.dialects.ollama import Translator, chat_to_openai, generate_to_openai

HI = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105]}
ALT = {"token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121]}


@pytest.mark.parametrize("body, completion, params", [
    ({}, False, {}),
    ({"logprobs": False, "top_logprobs": 5}, False, {}),  # top_logprobs alone is ignored, as in Ollama
    ({"logprobs": True}, False, {"logprobs": True}),
    ({"logprobs": True, "top_logprobs": 0}, False, {"logprobs": True}),
    ({"logprobs": True, "top_logprobs": 3}, False, {"logprobs": True, "top_logprobs": 3}),
    ({"logprobs": True}, True, {"logprobs": 0}),  # a text completion: OpenAI's legacy count
    ({"logprobs": True, "top_logprobs": 20}, True, {"logprobs": 20}),
])
def test_it_asks_lm_studio_for_log_probabilities_in_openais_fields(body, completion, params):
    assert logprob_params(body, completion) == params


@pytest.mark.parametrize("body, message", [
    ({"logprobs": "yes"}, "logprobs must be true or false"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs must be a whole number between 0 and 20"),
    ({"logprobs": True, "top_logprobs": -1}, "top_logprobs must be a whole number between 0 and 20"),
    ({"logprobs": True, "top_logprobs": 2.5}, "top_logprobs must be a whole number between 0 and 20"),
    ({"top_logprobs": True}, "top_logprobs must be a whole number between 0 and 20"),
])
def test_bad_logprob_fields_are_400s(body, message):
    with pytest.raises(BadRequest, match=message):
        logprob_params(body)


def test_chat_and_generate_requests_carry_them_and_a_raw_prompt_in_the_legacy_form():
    chat = chat_to_openai({"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 2})
    assert (chat["logprobs"], chat["top_logprobs"]) == (True, 2)
    generate = generate_to_openai({"prompt": "x", "logprobs": True, "top_logprobs": 2})
    assert (generate["logprobs"], generate["top_logprobs"]) == (True, 2)
    raw = generate_to_openai({"prompt": "x", "raw": True, "logprobs": True, "top_logprobs": 2})
    assert raw["logprobs"] == 2 and "top_logprobs" not in raw


@pytest.mark.parametrize("choice, entries", [
    ({}, []),
    ({"logprobs": None}, []),
    ({"logprobs": {"content": None, "refusal": None}}, []),
    ({"logprobs": {"content": [{**HI, "top_logprobs": []}]}}, [HI]),
    ({"logprobs": {"content": [{**HI, "top_logprobs": [HI, ALT]}]}}, [{**HI, "top_logprobs": [HI, ALT]}]),
    ({"logprobs": {"content": [{"token": "Hi", "logprob": -0.25}]}}, [{"token": "Hi", "logprob": -0.25}]),
    ({"logprobs": {"content": [{"token": "Hi"}, "junk", {**HI, "top_logprobs": [{"token": 1}]}]}}, [HI]),
    ({"logprobs": {"tokens": ["Hi", "!"], "token_logprobs": [-0.25, -2.0],
                   "top_logprobs": [{"Hi": -0.25, "Hey": -1.5}, None]}},
     [{"token": "Hi", "logprob": -0.25, "top_logprobs": [{"token": "Hi", "logprob": -0.25},
                                                          {"token": "Hey", "logprob": -1.5}]},
      {"token": "!", "logprob": -2.0}]),
    ({"logprobs": {"tokens": ["Hi"], "token_logprobs": [None]}}, []),
])
def test_it_turns_lm_studios_log_probabilities_into_ollamas(choice, entries):
    assert ollama_logprobs(choice) == entries


def chunk(text, logprobs=None, finish=None):
    return {"choices": [{"index": 0, "delta": {"content": text} if text else {}, "logprobs": logprobs,
                         "finish_reason": finish}]}


def content(*entries):
    return {"content": list(entries), "refusal": None}


@pytest.mark.parametrize("kind", ["chat", "generate"])
def test_each_chunk_carries_its_tokens_and_the_whole_answer_all_of_them(kind):
    bang = {"token": "!", "logprob": -2.0}
    stream = Translator("m", kind, logprobs=True)
    out = stream.feed(chunk("Hi", content(HI))) + stream.feed(chunk("!", content(bang)))
    out += stream.feed(chunk("", finish="stop")) + stream.finish(Timing())
    assert [c.get("logprobs") for c in out] == [[HI], [bang], None]
    whole = Translator("m", kind, logprobs=True)
    for event in (chunk("Hi", content(HI)), chunk("!", content(bang)), chunk("", finish="stop")):
        whole.feed(event)
    assert whole.whole(Timing())["logprobs"] == [HI, bang]


def test_entries_no_chunk_carried_go_with_the_next_one():
    stream = Translator("m", "chat", logprobs=True)
    assert stream.feed(chunk("", content(HI))) == []
    assert stream.finish(Timing())[-1]["logprobs"] == [HI]


def test_without_logprobs_from_lm_studio_or_unasked_there_is_no_field():
    for translator, event in ((Translator("m", "chat", logprobs=True), chunk("Hi")),
                              (Translator("m", "chat"), chunk("Hi", content(HI)))):
        out = translator.feed(event) + translator.finish(Timing())
        assert all("logprobs" not in c for c in out)
        assert "logprobs" not in translator.whole(Timing())
