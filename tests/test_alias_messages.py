"""An alias's `messages` (a conversation put before the client's) and `license` (shown, never sent):
routes.yaml, the export, the admin's store and form, and how a chat request gets them
(routing/config/messages.py, routing/config/overrides.py)."""
import io

import pytest
from django.core.exceptions import ValidationError

from routing.config.dump import dump_routes
from routing.config.loader import RouteTableError, load_routes
from routing.config.messages import Message, with_messages
from routing.config.overrides import apply_route
from routing.config.table import Defaults, Route, RouteAlias
from routing.models import Alias

ROUTES = """
aliases:
  pirate:
    model: llama-3.2-1b-instruct
    system: You are a pirate.
    messages:
      - {role: user, content: "Who are you?"}
      - {role: assistant, content: "Cap'n Byte."}
    license: |
      MIT License
      Copyright (c) 2025
"""
CONVERSATION = (Message("user", "Who are you?"), Message("assistant", "Cap'n Byte."))


def load(text: str):
    return load_routes(io.StringIO(text), source="routes.yaml")


def test_routes_yaml_reads_messages_and_license_and_the_export_writes_them_back():
    table = load(ROUTES)
    pirate = table.aliases["pirate"]
    assert pirate.messages == CONVERSATION and pirate.license == "MIT License\nCopyright (c) 2025\n"
    text = dump_routes(table)
    assert "    messages:\n    - role: user\n      content: Who are you?\n" in text
    assert load(text) == table


@pytest.mark.parametrize("spec, line, words", [
    ("messages: {role: user}", 4, "'messages' must be a list of {role, content}"),
    ("messages: [hi]", 4, "'messages[0]' must be a mapping of role and content"),
    ("messages: [{role: tool, content: x}]", 4, "'messages[0].role' must be one of system, user, assistant, "
                                                "got 'tool'"),
    ("messages: [{role: user, content: 3}]", 4, "'messages[0].content' must be a string"),
    ("messages: [{role: user, content: x, name: bob}]", 4,
     "'messages[0]' may have only role and content, not name"),
    ("license: [MIT]", 4, "'license' must be a string"),
])
def test_bad_messages_or_license_are_refused_naming_the_line(spec, line, words):
    with pytest.raises(RouteTableError) as info:
        load(f"aliases:\n  x:\n    model: m\n    {spec}\n")
    assert str(info.value).startswith(f"routes.yaml:{line}: alias 'x': {words}")


@pytest.mark.parametrize("client, mode, sent", [
    ([{"role": "user", "content": "hi"}], "prepend",
     ["system:You are a pirate.", "user:Who are you?", "assistant:Cap'n Byte.", "user:hi"]),
    ([{"role": "system", "content": "Mine."}, {"role": "user", "content": "hi"}], "prepend",
     ["system:You are a pirate.", "system:Mine.", "user:Who are you?", "assistant:Cap'n Byte.", "user:hi"]),
    ([{"role": "system", "content": "Mine."}, {"role": "user", "content": "hi"}], "default",
     ["system:Mine.", "user:Who are you?", "assistant:Cap'n Byte.", "user:hi"]),
    ([{"role": "system", "content": "Mine."}, {"role": "user", "content": "hi"}], "replace",
     ["system:You are a pirate.", "user:Who are you?", "assistant:Cap'n Byte.", "user:hi"]),
])
def test_a_chat_gets_the_conversation_after_the_system_prompt_and_before_its_own(client, mode, sent):
    alias = RouteAlias(name="pirate", model="m", system="You are a pirate.", system_mode=mode,
                       messages=CONVERSATION)
    out = apply_route({"messages": client}, Route("pirate", "m", alias), Defaults())
    assert [f"{m['role']}:{m['content']}" for m in out["messages"]] == sent


def test_embeddings_and_raw_completions_get_no_conversation_and_no_license_is_ever_sent():
    alias = RouteAlias(name="p", model="m", messages=CONVERSATION, license="MIT")
    assert apply_route({"input": "x"}, Route("p", "m", alias), Defaults(), sampling=False) == {"input": "x",
                                                                                             "model": "m"}
    assert apply_route({"prompt": "x"}, Route("p", "m", alias), Defaults()) == {"prompt": "x", "model": "m"}
    assert with_messages([{"role": "user", "content": "x"}], ()) == [{"role": "user", "content": "x"}]


def test_the_admin_stores_them_validated_like_the_file(routes_file):
    row = Alias(name="pirate", model="m", messages=[{"role": "user", "content": "hi"}], license="MIT")
    row.full_clean()
    row.save()
    alias = row.to_route_alias()
    assert (alias.messages, alias.license) == ((Message("user", "hi"),), "MIT")
    copy = Alias(name="copy")
    copy.copy_settings(alias)
    assert (copy.messages, copy.license) == ([{"role": "user", "content": "hi"}], "MIT")
    row.messages = [{"role": "robot", "content": "x"}]
    with pytest.raises(ValidationError) as info:
        row.full_clean()
    assert "'messages[0].role' must be one of system, user, assistant" in info.value.message_dict["messages"][0]


def test_the_admin_form_edits_messages_as_json(admin_client, routes_file):
    form = {"name": "pirate", "model": "llama-3.2-1b-instruct", "enabled": "on", "system_mode": "prepend",
            "policy": "fallback", "options": "{}", "messages": '[{"role": "user", "content": "hi"}]',
            "license": "MIT"}
    assert admin_client.post("/admin/routing/alias/add/", form).status_code == 302
    assert Alias.objects.get(name="pirate").messages == [{"role": "user", "content": "hi"}]
    page = admin_client.post("/admin/routing/alias/add/", {**form, "name": "bad", "messages": '[{"role": 1}]'})
    assert page.status_code == 200 and "messages[0].role" in page.content.decode()
