"""Load settings of aliases (routes.yaml validation, defaults, the num_ctx policy) and which loaded
LM Studio instance serves them: pure functions, tables of cases."""
import io

import pytest

from routing.config import load_settings
from routing.config.load_settings import choose_instance, clamp_to_model, effective, with_num_ctx
from routing.config.loader import RouteTableError, load_routes


def load(text: str):
    return load_routes(io.StringIO(text), source="routes.yaml")


def test_an_alias_and_the_defaults_carry_load_settings():
    table = load("""
defaults:
  flash_attention: true
  num_ctx_max: 32768
aliases:
  coder:
    model: qwen2.5-7b-instruct
    context_length: 65536
    eval_batch_size: 1024
    num_experts: 4
    offload_kv_cache_to_gpu: false
  chat: llama-3.2-1b-instruct
""")
    coder = table.aliases["coder"]
    assert (coder.context_length, coder.eval_batch_size, coder.num_experts, coder.offload_kv_cache_to_gpu,
            coder.flash_attention) == (65536, 1024, 4, False, None)
    assert (table.defaults.flash_attention, table.defaults.num_ctx_max) == (True, 32768)
    assert effective(coder, table.defaults) == (
        {"context_length": 65536, "eval_batch_size": 1024, "num_experts": 4,
         "flash_attention": True, "offload_kv_cache_to_gpu": False}, 32768)
    assert effective(table.aliases["chat"], table.defaults) == ({"flash_attention": True}, 32768)
    assert effective(None, table.defaults) == ({"flash_attention": True}, 32768)  # a pass-through name


@pytest.mark.parametrize("text, line, words", [
    ("aliases:\n  a:\n    model: x\n    context_length: 0\n", 4,
     "alias 'a': 'context_length' must be a positive whole number, got 0"),
    ("aliases:\n  a:\n    model: x\n    context_length: 64k\n", 4, "'context_length' must be a positive whole"),
    ("aliases:\n  a:\n    model: x\n    context_length: 4096.5\n", 4, "'context_length' must be a positive"),
    ("aliases:\n  a:\n    model: x\n    eval_batch_size: true\n", 4, "'eval_batch_size' must be a positive"),
    ("aliases:\n  a:\n    model: x\n    num_experts: -2\n", 4, "'num_experts' must be a positive"),
    ("aliases:\n  a:\n    model: x\n    flash_attention: yes please\n", 4,
     "'flash_attention' must be true or false, got 'yes please'"),
    ("aliases:\n  a:\n    model: x\n    offload_kv_cache_to_gpu: 1\n", 4, "'offload_kv_cache_to_gpu' must be true"),
    ("aliases:\n  a:\n    model: x\n    num_ctx_max: honour\n", 4, "'num_ctx_max' must be a positive"),
    ("aliases:\n  a:\n    model: x\n    context_lenght: 4096\n", 4, "unknown key 'context_lenght'"),
    ("defaults:\n  ttl: 5m\n  context_length: -1\n", 3, "defaults: 'context_length' must be a positive"),
    ("defaults:\n  gpu_offload: max\n", 2, "defaults: unknown key 'gpu_offload'"),
])
def test_bad_load_settings_name_the_file_and_line(text, line, words):
    with pytest.raises(RouteTableError) as caught:
        load(text)
    assert caught.value.line == line and words in str(caught.value)
    assert str(caught.value).startswith(f"routes.yaml:{line}: ")


@pytest.mark.parametrize("settings, num_ctx_max, num_ctx, expected", [
    ({"context_length": 8192}, None, 65536, {"context_length": 8192}),      # policy: ignore
    ({"context_length": 8192}, 32768, 16384, {"context_length": 16384}),    # honoured
    ({"context_length": 8192}, 32768, 131072, {"context_length": 32768}),   # up to the maximum
    ({}, 32768, 4096, {"context_length": 4096}),                            # without an own setting
    ({"context_length": 8192}, 32768, None, {"context_length": 8192}),      # not sent
    ({"context_length": 8192}, 32768, "big", {"context_length": 8192}),     # not a number: ignored
    ({"context_length": 8192}, 32768, 0, {"context_length": 8192}),
    ({"context_length": 8192}, 32768, True, {"context_length": 8192}),
    ({"flash_attention": True}, 32768, 2048, {"flash_attention": True, "context_length": 2048}),
])
def test_num_ctx_is_honoured_only_as_the_policy_says(settings, num_ctx_max, num_ctx, expected):
    assert dict(with_num_ctx(settings, num_ctx_max, num_ctx)) == expected


def test_the_policy_is_said_in_words():
    assert load_settings.num_ctx_policy(None) == "ignored"
    assert load_settings.num_ctx_policy(65536) == "honoured up to 65536"


def instance(instance_id, context_length, **config):
    return {"id": instance_id, "config": {"context_length": context_length, **config}}


NATIVE = {"key": "m", "max_context_length": 131072, "loaded_instances": [
    instance("m", 4096, flash_attention=False), instance("m:2", 65536, flash_attention=True),
    instance("m:3", 8192)]}


@pytest.mark.parametrize("native, settings, remembered, expected", [
    (NATIVE, {"context_length": 65536}, None, "m:2"),
    (NATIVE, {"context_length": 8192}, None, "m:3"),       # exactly: not the bigger m:2
    (NATIVE, {"context_length": 4096, "flash_attention": False}, None, "m"),
    (NATIVE, {"context_length": 8192, "flash_attention": False}, None, None),  # m:3 does not say
    (NATIVE, {"context_length": 32768}, None, None),       # none loaded so: load one
    (NATIVE, {"context_length": 32768}, "m:3", "m:3"),     # the one this process loaded for them
    (NATIVE, {"context_length": 32768}, "m:9", None),      # ... unless it is gone
    ({"key": "m", "loaded_instances": []}, {"context_length": 4096}, None, None),
    (None, {"context_length": 4096}, None, None),
    ({"key": "m", "loaded_instances": [{"config": {}}, "junk"]}, {"context_length": 4096}, None, None),
])
def test_the_instance_that_serves_settings_is_the_one_loaded_exactly_so(native, settings, remembered,
                                                                         expected):
    assert choose_instance(native, settings, remembered) == expected


@pytest.mark.parametrize("settings, native, expected", [
    ({"context_length": 65536}, {"max_context_length": 32768}, {"context_length": 32768}),
    ({"context_length": 8192}, {"max_context_length": 32768}, {"context_length": 8192}),
    ({"context_length": 65536}, {}, {"context_length": 65536}),
    ({"flash_attention": True}, {"max_context_length": 2048}, {"flash_attention": True}),
])
def test_a_context_above_the_models_maximum_is_asked_for_as_the_maximum(settings, native, expected):
    assert dict(clamp_to_model(settings, native)) == expected


def test_the_load_request_names_the_model_and_asks_for_the_config_back():
    assert load_settings.load_request("m", {"context_length": 65536, "flash_attention": True}) == {
        "model": "m", "context_length": 65536, "flash_attention": True, "echo_load_config": True}
