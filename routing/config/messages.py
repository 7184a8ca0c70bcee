"""What an alias says besides its overrides: the conversation it puts before the client's (`messages`,
Ollama's MESSAGE), and the license it shows (`license`, Ollama's LICENSE; kept and shown, never sent).

Both are validated here for `routing.config.loader.alias_fields`, so routes.yaml, the admin and
`/api/create` refuse the same things with the same words.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

MESSAGE_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One message of an alias's conversation."""

    role: str
    content: str

    def to_yaml(self) -> dict:
        """As routes.yaml (and the admin's JSON, and Ollama's show) write it."""
        return {"role": self.role, "content": self.content}


def messages_field(data: Mapping, fail: Callable[[str, str], None]) -> dict:
    """The alias field `messages`: a list of {role: system|user|assistant, content: text}."""
    value = data.get("messages")
    if value is None or value == []:
        return {"messages": ()}
    if not isinstance(value, (list, tuple)):
        fail("'messages' must be a list of {role, content}", "messages")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, Message):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            fail(f"'messages[{i}]' must be a mapping of role and content", "messages")
        extra = sorted(str(k) for k, v in item.items() if k not in ("role", "content") and v not in (None, [], ""))
        if extra:
            fail(f"'messages[{i}]' may have only role and content, not {', '.join(extra)}", "messages")
        role, content = item.get("role"), item.get("content")
        if role not in MESSAGE_ROLES:
            fail(f"'messages[{i}].role' must be one of {', '.join(MESSAGE_ROLES)}, got {role!r}", "messages")
        if not isinstance(content, str):
            fail(f"'messages[{i}].content' must be a string", "messages")
        out.append(Message(role, content))
    return {"messages": tuple(out)}


def license_field(data: Mapping, fail: Callable[[str, str], None]) -> dict:
    """The alias field `license`: text (empty: none)."""
    value = data.get("license")
    if value is not None and not isinstance(value, str):
        fail("'license' must be a string", "license")
    return {"license": value or None}


def with_messages(messages: list[dict], conversation: tuple[Message, ...]) -> list[dict]:
    """The client's messages with an alias's conversation put before them, after the leading system
    messages (chat templates want the system prompt first)."""
    if not conversation:
        return messages
    head = 0
    while head < len(messages) and messages[head].get("role") == "system":
        head += 1
    ours = [m.to_yaml() for m in conversation]
    return messages[:head] + ours + messages[head:]
