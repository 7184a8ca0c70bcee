"""Ollama's Modelfile: read into the fields of `/api/create`'s JSON form, and written from an alias.

Read as Ollama's parser reads it (`parser/parser.go`): one instruction per line, its name in any case;
a line starting with `#` is a comment; the value is the rest of the line, trimmed. A value starting with
`\"\"\"` runs until a line that ends in `\"\"\"`, one starting with `"` until a line that ends in `"` (both
may span lines); the quotes are taken off and nothing inside is unescaped. `PARAMETER` takes a name
and a value, `MESSAGE` a role and a value. Every error is a 400 naming the line (`ModelfileError`).

Written (`alias_modelfile`) in the form Ollama's `show --modelfile` prints, with values quoted only
when they must be, so that reading it back gives the same alias (the round trip the tests check).
Pure functions: text in, data out.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from routing.config.durations import format_duration
from routing.config.messages import MESSAGE_ROLES
from routing.config.table import RouteAlias
from routing.core.errors import BadRequest

INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message", "requires",
                "renderer", "parser")
# The type of each Modelfile parameter (Ollama's api/types.go `Options` and `Runner`): how PARAMETER's
# text is read and what a JSON `parameters` value must be. The same names as loader.OLLAMA_OPTIONS.
PARAMETER_TYPES = {
    **dict.fromkeys(("num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "num_ctx", "num_batch",
                     "num_gpu", "main_gpu", "num_thread", "mirostat"), int),
    **dict.fromkeys(("top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
                     "frequency_penalty", "tfs_z", "mirostat_tau", "mirostat_eta"), float),
    **dict.fromkeys(("penalize_newline", "numa", "low_vram", "use_mmap", "use_mlock"), bool),
    "stop": list,
}
_TRUE, _FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")
_LINE = re.compile(r"(\S+)(?:[ \t]+(.*))?", re.S)
_NEWLINE = re.compile(r"\r\n|\r|\n")


class ModelfileError(BadRequest):
    """A Modelfile that cannot be read; the message names the line (None: the whole file)."""

    def __init__(self, line: int | None, message: str):
        super().__init__(f"Modelfile line {line}: {message}" if line else f"Modelfile: {message}")
        self.line = line


def unquote(text: str) -> str | None:
    """A trimmed value without its quotes, or None while a quoted value is not closed yet."""
    if text.startswith('"""'):
        return text[3:-3] if len(text) >= 6 and text.endswith('"""') else None
    if text.startswith('"'):
        return text[1:-1] if len(text) >= 2 and text.endswith('"') else None
    return text


def _value(first: str, lines: list[str], at: int) -> tuple[str | None, int]:
    """(the value that starts with `first` and may go on over `lines[at:]`, the index after it);
    None when the file ends before its quote is closed."""
    text = first
    while (value := unquote(text.strip())) is None and at < len(lines):
        text += "\n" + lines[at]
        at += 1
    return value, at


def parse(text: str) -> list[tuple[str, str, str, int]]:
    """The instructions of a Modelfile as (instruction in lower case, PARAMETER's name or MESSAGE's
    role or "", value, line number)."""
    lines = _NEWLINE.split(text.removeprefix("\ufeff"))
    out, at = [], 0
    while at < len(lines):
        number, line = at + 1, lines[at].lstrip()
        at += 1
        if not line.strip() or line.startswith("#"):
            continue
        word, rest = _LINE.match(line).groups()
        name, key = word.lower(), ""
        if not word.isalpha() or name not in INSTRUCTIONS:
            raise ModelfileError(number, f"unknown instruction '{word}' (a Modelfile has "
                                         f"{', '.join(i.upper() for i in INSTRUCTIONS[:8])})")
        if name in ("parameter", "message"):
            key, rest = _key(word.upper(), rest, number)
        if not (rest or "").strip():
            raise ModelfileError(number, f"{word.upper()} needs a value")
        value, at = _value(rest, lines, at)
        if value is None:
            opener = '"""' if rest.strip().startswith('"""') else '"'
            raise ModelfileError(number, f"{word.upper()}: the {opener} that opens the value here is never "
                                         f"closed")
        out.append((name, key, value, number))
    return out


def _key(instruction: str, rest: str | None, number: int) -> tuple[str, str | None]:
    """PARAMETER's name or MESSAGE's role, and the rest of the line."""
    what = "a name" if instruction == "PARAMETER" else "a role"
    found = _LINE.match((rest or "").lstrip())
    if found is None or not found.group(2) or not found.group(2).strip():
        raise ModelfileError(number, f"{instruction} needs {what} and a value")
    key, rest = found.groups()
    if instruction == "PARAMETER" and key not in PARAMETER_TYPES:
        raise ModelfileError(number, f"unknown parameter '{key}'")
    if instruction == "MESSAGE" and key not in MESSAGE_ROLES:
        raise ModelfileError(number, f"MESSAGE role must be one of {', '.join(MESSAGE_ROLES)}, got '{key}'")
    return key, rest


def parameter_from_text(name: str, text: str) -> Any:
    """A PARAMETER's text as its type says (ValueError saying what was expected)."""
    kind = PARAMETER_TYPES[name]
    if kind is int:
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            raise ValueError(f"'{text}' is not a whole number")
        return int(text)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a number") from None
    if kind is bool:
        if text.strip() not in _TRUE + _FALSE:
            raise ValueError(f"'{text}' is not true or false")
        return text.strip() in _TRUE
    return text


def request_fields(text: str) -> tuple[dict, dict[str, int]]:
    """A Modelfile as the fields of `/api/create`'s JSON form (`from`, `parameters`, `system`,
    `messages`, `license` as a list, and what LM Studio cannot honour: `template`, `adapters`...),
    with the line each field came from (`parameters.<name>` for each parameter)."""
    fields: dict[str, Any] = {}
    lines: dict[str, int] = {}
    parameters: dict[str, Any] = {}
    for name, key, value, number in parse(text):
        field = {"adapter": "adapters", "message": "messages"}.get(name, name)
        if name == "parameter":
            try:
                typed = parameter_from_text(key, value)
            except ValueError as exc:
                raise ModelfileError(number, f"PARAMETER {key}: {exc}") from None
            if key == "stop":
                parameters.setdefault("stop", []).append(typed)
            else:
                parameters.setdefault(key, typed)  # Ollama keeps a parameter's first value
            lines.setdefault(f"parameters.{key}", number)
            continue
        if name == "message":
            fields.setdefault("messages", []).append({"role": key, "content": value})
        elif name == "license":
            fields.setdefault("license", []).append(value)
        elif name == "adapter":
            fields.setdefault("adapters", {})[value] = ""
        else:
            fields[field] = value  # the last FROM, SYSTEM... wins, as in Ollama
        lines.setdefault(field, number)
    if "from" not in fields:
        raise ModelfileError(None, "no FROM line (FROM names the LM Studio model or alias to start from)")
    if parameters:
        fields["parameters"] = parameters
    return fields, lines


# --- Writing -------------------------------------------------------------------------------------


def _reads_back(text: str, value: str) -> bool:
    lines = text.split("\n")
    got, at = _value(lines[0], lines, 1)
    return got == value and at == len(lines)


def quote(value: str) -> str | None:
    """A value as a Modelfile line carries it: bare when it reads back the same, else in `"` or
    `\"\"\"`, whichever reads back the same. None when neither does (Ollama has no escapes: a text
    whose first line ends in `"` and a later one in `\"\"\"` cannot be written)."""
    forms = ([value] if value.strip() else []) + [f'"{value}"', f'"""{value}"""']
    return next((form for form in forms if _reads_back(form, value)), None)


def value_text(value: Any) -> str | None:
    """A parameter's value as Modelfile text (None: it cannot be written)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    return str(value)


def _line(instruction: str, value: str | None) -> str:
    """One instruction line, or a comment saying why it cannot be written."""
    if value is None:
        return f"# {instruction} left out: its text cannot be quoted in a Modelfile"
    return f"{instruction} {value}"


def alias_parameters(alias: RouteAlias) -> list[tuple[str, Any]]:
    """The Ollama parameters an alias sets: its context length as `num_ctx`, its temperature, its
    options (`stop` once per string)."""
    out: list[tuple[str, Any]] = []
    if alias.context_length is not None:
        out.append(("num_ctx", alias.context_length))
    if alias.temperature is not None:
        out.append(("temperature", alias.temperature))
    for name, value in alias.options.items():
        if name == "num_ctx" and alias.context_length is not None:
            continue
        out += [(name, v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return out


def _not_carried(alias: RouteAlias) -> Iterable[str]:
    """The alias's settings a Modelfile has no instruction for."""
    if alias.ttl is not None:
        yield f"ttl {format_duration(alias.ttl)}"
    if alias.system and alias.system_mode != "prepend":
        yield f"system_mode {alias.system_mode}"
    if alias.backends:
        yield f"backends {', '.join(alias.backends)} ({alias.policy})"
    if alias.download is not None:
        yield f"download {alias.download.text}"
    if alias.hidden:
        yield "hidden"
    for key in ("eval_batch_size", "num_experts", "flash_attention", "offload_kv_cache_to_gpu", "num_ctx_max"):
        if getattr(alias, key) is not None:
            yield f"{key} {getattr(alias, key)}"


def alias_modelfile(alias: RouteAlias | None, model_id: str, shown_as: str) -> str:
    """The Modelfile `ollama show --modelfile` prints for a model name: FROM the LM Studio model, then
    the alias's parameters, SYSTEM, MESSAGE and LICENSE lines. `/api/create` reads it back into the
    same alias; comments say how to start from the alias itself, and what a Modelfile cannot carry."""
    head = ['# Modelfile generated by "ollama show"']
    if alias is not None:
        head += ["# To build a new Modelfile based on this alias (with its settings a Modelfile cannot "
                 "carry), replace FROM with:", f"# FROM {shown_as}"]
        carried_not = ", ".join(_not_carried(alias))
        if carried_not:
            head.append(f"# Not carried by this Modelfile: {carried_not}")
    body = [f"FROM {model_id}"]
    if alias is not None:
        body += [_line(f"PARAMETER {name}", value_text(value)) for name, value in alias_parameters(alias)]
        if alias.system:
            body.append(_line("SYSTEM", quote(alias.system)))
        body += [_line(f"MESSAGE {m.role}", quote(m.content)) for m in alias.messages]
        if alias.license:
            body.append(_line("LICENSE", quote(alias.license)))
    return "\n".join(head) + "\n\n" + "\n".join(body) + "\n"
