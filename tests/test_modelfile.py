"""Ollama's Modelfile (routing/config/modelfile.py): read as Ollama reads it, errors naming the line, and
written back from an alias so that reading it again gives the same alias."""
import pytest

from routing.config import creation, modelfile
from routing.config.loader import OLLAMA_OPTIONS
from routing.config.messages import Message
from routing.config.table import RouteAlias
from routing.core.errors import BadRequest

Q = '"""'


@pytest.mark.parametrize("text, instructions", [
    ("FROM qwen2.5-7b-instruct", [("from", "", "qwen2.5-7b-instruct", 1)]),
    ("from  qwen2.5-7b-instruct  \n", [("from", "", "qwen2.5-7b-instruct", 1)]),  # any case, trimmed
    ("\ufeff# a comment\n\n   FROM x\n", [("from", "", "x", 3)]),  # BOM, comments, blank lines
    ("FROM x\r\nSYSTEM hi\r\n", [("from", "", "x", 1), ("system", "", "hi", 2)]),  # CRLF
    ("FROM x\nSYSTEM you are #1", [("from", "", "x", 1), ("system", "", "you are #1", 2)]),  # '#' mid-value
    ('FROM x\nSYSTEM "  spaced  "', [("from", "", "x", 1), ("system", "", "  spaced  ", 2)]),
    ('FROM x\nSYSTEM ""', [("from", "", "x", 1), ("system", "", "", 2)]),
    (f"FROM x\nSYSTEM {Q}one\n  two\n{Q}", [("from", "", "x", 1), ("system", "", "one\n  two\n", 2)]),
    (f'FROM x\nSYSTEM {Q}say "hi"{Q}', [("from", "", "x", 1), ("system", "", 'say "hi"', 2)]),
    (f"FROM x\nSYSTEM {Q}\n# not a comment\nFROM not an instruction\n{Q}\nPARAMETER seed 1",
     [("from", "", "x", 1), ("system", "", "\n# not a comment\nFROM not an instruction\n", 2),
      ("parameter", "seed", "1", 6)]),
    ('FROM x\nSYSTEM "one\ntwo"', [("from", "", "x", 1), ("system", "", "one\ntwo", 2)]),  # " spans lines
    ("FROM x\nPARAMETER\ttemperature\t0.2", [("from", "", "x", 1), ("parameter", "temperature", "0.2", 2)]),
    ('FROM x\nPARAMETER stop "<|im_end|>"', [("from", "", "x", 1), ("parameter", "stop", "<|im_end|>", 2)]),
    ("FROM x\nMESSAGE user Is Toronto in Canada?\nMESSAGE assistant yes",
     [("from", "", "x", 1), ("message", "user", "Is Toronto in Canada?", 2), ("message", "assistant", "yes", 3)]),
    ("FROM x\nLICENSE MIT\nREQUIRES 0.6.0", [("from", "", "x", 1), ("license", "", "MIT", 2),
                                             ("requires", "", "0.6.0", 3)]),
])
def test_it_reads_instructions_as_ollama_does(text, instructions):
    assert modelfile.parse(text) == instructions


@pytest.mark.parametrize("text, message", [
    ("FORM x", "Modelfile line 1: unknown instruction 'FORM'"),
    ("FROM x\n\nINCLUDE other", "Modelfile line 3: unknown instruction 'INCLUDE'"),
    ("FROM x\nFROM:y", "Modelfile line 2: unknown instruction 'FROM:y'"),
    ("FROM x\nSYSTEM", "Modelfile line 2: SYSTEM needs a value"),
    ("FROM x\nSYSTEM   ", "Modelfile line 2: SYSTEM needs a value"),
    (f"FROM x\nSYSTEM {Q}never\nclosed", 'Modelfile line 2: SYSTEM: the """ that opens the value here is '
                                         'never closed'),
    ('FROM x\nLICENSE "open', 'Modelfile line 2: LICENSE: the " that opens the value here is never closed'),
    ("FROM x\nPARAMETER temprature 0.2", "Modelfile line 2: unknown parameter 'temprature'"),
    ("FROM x\nPARAMETER Temperature 0.2", "Modelfile line 2: unknown parameter 'Temperature'"),  # as Ollama
    ("FROM x\nPARAMETER seed", "Modelfile line 2: PARAMETER needs a name and a value"),
    ("FROM x\nMESSAGE tool hi",
     "Modelfile line 2: MESSAGE role must be one of system, user, assistant, got 'tool'"),
    ("FROM x\nMESSAGE user", "Modelfile line 2: MESSAGE needs a role and a value"),
])
def test_a_bad_modelfile_is_a_400_naming_the_line(text, message):
    with pytest.raises(modelfile.ModelfileError) as info:
        modelfile.parse(text)
    assert isinstance(info.value, BadRequest) and info.value.status == 400
    assert info.value.message.startswith(message)


def test_an_unknown_instruction_is_told_the_ones_there_are():
    with pytest.raises(modelfile.ModelfileError, match="a Modelfile has FROM, PARAMETER, TEMPLATE, SYSTEM, "
                                                       "ADAPTER, LICENSE, MESSAGE, REQUIRES"):
        modelfile.parse("INCLUDE x")


@pytest.mark.parametrize("name, text, value", [
    ("temperature", "0.2", 0.2), ("temperature", "1", 1.0), ("top_k", "40", 40), ("seed", "-3", -3),
    ("num_ctx", "+8192", 8192), ("use_mmap", "true", True), ("numa", "F", False), ("penalize_newline", "1", True),
    ("stop", "</s>", "</s>"),
])
def test_it_reads_a_parameter_by_its_type(name, text, value):
    assert modelfile.parameter_from_text(name, text) == value


@pytest.mark.parametrize("text, message", [
    ("FROM x\nPARAMETER temperature hot", "Modelfile line 2: PARAMETER temperature: 'hot' is not a number"),
    ("FROM x\nPARAMETER num_ctx 4k", "Modelfile line 2: PARAMETER num_ctx: '4k' is not a whole number"),
    ("FROM x\nPARAMETER num_ctx 1.5", "Modelfile line 2: PARAMETER num_ctx: '1.5' is not a whole number"),
    ("FROM x\nPARAMETER use_mmap yes", "Modelfile line 2: PARAMETER use_mmap: 'yes' is not true or false"),
    ("# only a comment\nSYSTEM hi", "Modelfile: no FROM line"),
])
def test_a_bad_value_or_a_missing_from_is_named(text, message):
    with pytest.raises(modelfile.ModelfileError) as info:
        modelfile.request_fields(text)
    assert info.value.message.startswith(message)


def test_it_reads_a_modelfile_into_the_json_forms_fields_with_their_lines():
    fields, lines = modelfile.request_fields(
        "FROM base\nPARAMETER stop a\nPARAMETER seed 1\nPARAMETER stop b\nPARAMETER seed 2\nSYSTEM one\n"
        "SYSTEM two\nMESSAGE user hi\nLICENSE MIT\nLICENSE Apache\nTEMPLATE {{ .Prompt }}\nADAPTER ./lora")
    assert fields == {"from": "base", "parameters": {"stop": ["a", "b"], "seed": 1},  # the first seed, as Ollama
                      "system": "two", "messages": [{"role": "user", "content": "hi"}],  # the last SYSTEM
                      "license": ["MIT", "Apache"], "template": "{{ .Prompt }}", "adapters": {"./lora": ""}}
    assert lines == {"from": 1, "parameters.stop": 2, "parameters.seed": 3, "system": 6, "messages": 8,
                     "license": 9, "template": 11, "adapters": 12}


def test_every_route_table_option_has_a_type():
    assert set(modelfile.PARAMETER_TYPES) == OLLAMA_OPTIONS


@pytest.mark.parametrize("value, quoted", [
    ("plain words", "plain words"),
    ("<|im_end|>", "<|im_end|>"),
    (" edge ", '" edge "'),
    ("two\nlines", '"two\nlines"'),
    ('"quoted"', '""quoted""'),
    ('line "one"\nline two', '"""line "one"\nline two"""'),
    ('ends with "\nhere', '"""ends with "\nhere"""'),
    ("", '""'),
    ("\n", '"\n"'),
])
def test_it_quotes_a_value_only_as_much_as_it_must(value, quoted):
    assert modelfile.quote(value) == quoted
    [(_, _, read, _)] = modelfile.parse(f"SYSTEM {quoted}")
    assert read == value


ROUND_TRIPS = [
    RouteAlias(name="plain", model="qwen2.5-7b-instruct"),
    RouteAlias(name="full", model="qwen2.5-7b-instruct", temperature=0.2, context_length=65536,
               system="You are terse.", options={"top_p": 0.9, "stop": ["<|im_end|>", "\n\n"], "seed": 7,
                                                 "use_mmap": False, "num_predict": -1},
               messages=(Message("user", "hi"), Message("assistant", "  Arr, matey!  ")), license="MIT"),
    RouteAlias(name="tricky", model="lmstudio-community/qwen3-4b", system='Say "hi"\n""\nthen stop."',
               messages=(Message("system", "# not a comment"), Message("user", '"'), Message("user", "FROM x")),
               license="Line one\n\nLine three\n"),
]


@pytest.mark.parametrize("alias", ROUND_TRIPS, ids=lambda a: a.name)
def test_an_alias_written_as_a_modelfile_reads_back_into_the_same_alias(alias):
    text = modelfile.alias_modelfile(alias, alias.model, f"{alias.name}:latest")
    wanted = creation.create_request({"modelfile": text}, alias.name)
    assert wanted.source == alias.model
    again = creation.alias_of(wanted, None, wanted.source)
    assert again == RouteAlias(**{**alias.__dict__, "source": "admin", "options": again.options})
    assert dict(again.options) == dict(alias.options)


def test_the_written_modelfile_looks_like_ollamas_and_says_what_it_cannot_carry():
    alias = RouteAlias(name="coder", model="qwen2.5-7b-instruct", ttl=1800, temperature=0.2,
                       system="You are terse.", options={"stop": ["</s>"]}, backends=("gpu",), num_ctx_max=8192)
    assert modelfile.alias_modelfile(alias, alias.model, "coder:latest") == (
        '# Modelfile generated by "ollama show"\n'
        "# To build a new Modelfile based on this alias (with its settings a Modelfile cannot carry), "
        "replace FROM with:\n"
        "# FROM coder:latest\n"
        "# Not carried by this Modelfile: ttl 30m, backends gpu (fallback), num_ctx_max 8192\n"
        "\n"
        "FROM qwen2.5-7b-instruct\n"
        "PARAMETER temperature 0.2\n"
        "PARAMETER stop </s>\n"
        "SYSTEM You are terse.\n")


def test_a_text_no_quoting_can_carry_is_left_out_with_a_comment_and_the_rest_still_reads():
    alias = RouteAlias(name="odd", model="m", system='Say "hi"\n"""\nthen stop.', license="MIT")
    assert modelfile.quote(alias.system) is None
    text = modelfile.alias_modelfile(alias, "m", "odd:latest")
    assert "# SYSTEM left out: its text cannot be quoted in a Modelfile\n" in text
    fields, _ = modelfile.request_fields(text)
    assert fields == {"from": "m", "license": ["MIT"]}


def test_a_model_that_is_no_alias_is_only_a_from_line():
    assert modelfile.alias_modelfile(None, "llama-3.2-1b-instruct", "llama-3.2-1b-instruct:latest") == (
        '# Modelfile generated by "ollama show"\n\nFROM llama-3.2-1b-instruct\n')
