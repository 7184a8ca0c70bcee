"""`/api/create`'s request, in either form Ollama has taken, as the settings of an alias. Pure.

The JSON form (`from`, `parameters`, `system`, `messages`, `license`...) and the older `modelfile`
text (read by `routing.config.modelfile`) become one `CreateRequest`; `alias_of` lays it over what it
starts from (an alias's settings, or a bare LM Studio model) and validates the result with the route
table's own `alias_fields`. What LM Studio cannot honour is a 400 saying so, before anything is stored;
every error names the Modelfile line, or the JSON field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from routing.config import modelfile
from routing.config.load_settings import FIELDS as LOAD_FIELDS
from routing.config.loader import RouteTableError, alias_fields
from routing.config.overrides import OLLAMA_NAMES, check_params, options_to_params
from routing.config.table import RouteAlias, normalize_name
from routing.core.errors import BadRequest

JSON_FIELDS = ("from", "parameters", "system", "messages", "license", "template", "adapters", "quantize",
               "files", "requires", "renderer", "parser")
CANNOT = {
    "template": "LM Studio applies the model's own chat template: a template cannot be honoured (leave it out)",
    "adapters": "LM Studio cannot apply adapters (LoRA): an adapter cannot be honoured",
    "quantize": "LM Studio cannot quantize a model: download the quantization you want instead "
                "(FROM hf.co/user/repo:Q4_K_M)",
    "files": "LM Studio cannot build a model from files: FROM names an LM Studio model id, an alias, a "
             "catalog id or hf.co/user/repo:QUANTIZATION",
    "renderer": "LM Studio renders prompts with the model's own chat template: a renderer cannot be honoured",
    "parser": "LM Studio parses the model's output itself: a parser cannot be honoured",
}
# How an error names a field of the Modelfile form: its instruction.
_INSTRUCTION = {"from": "FROM", "system": "SYSTEM", "messages": "MESSAGE", "license": "LICENSE",
                "template": "TEMPLATE", "adapters": "ADAPTER", "requires": "REQUIRES", "renderer": "RENDERER",
                "parser": "PARSER"}
# The request field behind an alias field that failed validation.
_REQUEST_FIELD = {"temperature": "parameters.temperature", "context_length": "parameters.num_ctx",
                  "options": "parameters"}
_VERSION = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?")


@dataclass(frozen=True)
class CreateRequest:
    """What `/api/create` asks for, checked: the new name, where it starts from, and what it sets."""

    name: str
    source: str                           # `from`
    system: str | None = None             # None: the source's; "": none
    messages: Any = None                  # None: the source's (validated by alias_fields)
    license: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    requires: str | None = None
    lines: Mapping[str, int] = field(default_factory=dict)  # field -> its Modelfile line

    def where(self, name: str) -> str:
        """How an error starts: the Modelfile line and instruction a field came from, or the field."""
        return _where(name, self.lines)


def _where(name: str, lines: Mapping[str, int]) -> str:
    line = lines.get(name)
    if line is None:
        return f"{name}: "
    instruction = _INSTRUCTION.get(name) or "PARAMETER " + name.removeprefix("parameters.")
    return f"Modelfile line {line}: {instruction}: "


def create_request(body: Mapping, name: str) -> CreateRequest:
    """The request in `body` (the JSON fields, or a `modelfile` whose fields the JSON ones replace)
    for the alias `name`; a BadRequest for anything that cannot be done."""
    fields: dict[str, Any] = {}
    lines: dict[str, int] = {}
    text = body.get("modelfile")
    if text not in (None, ""):
        if not isinstance(text, str):
            raise BadRequest("modelfile must be a string")
        fields, lines = modelfile.request_fields(text)
    for key in JSON_FIELDS:
        if body.get(key) is not None:
            fields[key] = body[key]
            lines = {k: v for k, v in lines.items() if k != key and not k.startswith(key + ".")}
    for key, why in CANNOT.items():
        if fields.get(key):
            raise BadRequest(_where(key, lines) + why)
    source = fields.get("from")
    if source is None:
        raise BadRequest("from is required: the LM Studio model id, alias, catalog id or hf.co/user/repo "
                         "the new model starts from")
    if not isinstance(source, str) or not source.strip():
        raise BadRequest(_where("from", lines) + "must be a non-empty string")
    if _is_path(source):
        raise BadRequest(_where("from", lines) + CANNOT["files"])
    return CreateRequest(name=name, source=source.strip(), system=_text(fields, "system", lines),
                         messages=fields.get("messages"), license=_license(fields.get("license"), lines),
                         parameters=parameters(fields.get("parameters"), lines),
                         requires=_text(fields, "requires", lines), lines=lines)


def _is_path(source: str) -> bool:
    """A FROM naming a file (`./model.gguf`): the CLI uploads those as blobs, which LM Studio cannot use."""
    source = source.strip()
    return source.startswith(("/", ".", "~")) or "\\" in source or source.lower().endswith(
        (".gguf", ".safetensors", ".bin"))


def _text(fields: Mapping, key: str, lines: Mapping[str, int]) -> str | None:
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(_where(key, lines) + "must be a string")
    return value


def _license(value: Any, lines: Mapping[str, int]) -> str | None:
    """One text: several licenses (a list, or several LICENSE lines) one after the other."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(_where("license", lines) + "must be a string or a list of strings")
    return "\n".join(value)


def parameters(value: Any, lines: Mapping[str, int] | None = None) -> dict[str, Any]:
    """`parameters` checked against Ollama's parameters, their types (`stop`: a list) and the range of
    what LM Studio is sent (as a client's options are)."""
    lines = lines or {}
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest("parameters must be an object of Ollama parameters")
    out = {}
    for name, given in value.items():
        kind = modelfile.PARAMETER_TYPES.get(name)
        where = _where(f"parameters.{name}", lines)
        if kind is None:
            raise BadRequest(f"parameters: unknown parameter '{name}'")
        if given is None:
            continue
        if kind is list:
            given = [given] if isinstance(given, str) else given
            if not isinstance(given, list) or not all(isinstance(s, str) for s in given):
                raise BadRequest(where + "must be a string or a list of strings")
        elif kind is bool and not isinstance(given, bool):
            raise BadRequest(where + "must be true or false")
        elif kind is not bool and (isinstance(given, bool) or not isinstance(given, (int, float))):
            raise BadRequest(where + "must be a number")
        elif kind is int:
            if isinstance(given, float) and not given.is_integer():
                raise BadRequest(where + "must be a whole number")
            given = int(given)
        try:
            check_params(options_to_params({name: given}), names=OLLAMA_NAMES)
        except BadRequest as exc:
            raise BadRequest(where + exc.message) from None
        out[name] = given
    return out


def check_requires(request: CreateRequest, version: str):
    """REQUIRES (`requires`): the Ollama version a Modelfile needs, against the one this proxy serves."""
    if request.requires is None:
        return
    wanted, ours = _VERSION.fullmatch(request.requires.strip()), _VERSION.fullmatch(version)
    if wanted is None:
        raise BadRequest(request.where("requires") + f"'{request.requires}' is not a version such as 0.14.0")
    if tuple(int(n or 0) for n in wanted.groups()) > tuple(int(n or 0) for n in ours.groups()):
        raise BadRequest(request.where("requires") + f"needs Ollama {request.requires}; this proxy serves the "
                                                     f"API of Ollama {version}")


def alias_of(request: CreateRequest, base: RouteAlias | None, model: str) -> RouteAlias:
    """The alias `request` makes: `base`'s settings (when `from` is an alias; else a bare alias of
    `model`) with the request's on top: its parameters over the options (temperature and num_ctx to
    the alias's temperature and context_length), and its system prompt, messages and license in
    place of the base's when given. Validated as routes.yaml validates aliases."""
    start = base or RouteAlias(name=request.name, model=model)
    params = dict(request.parameters)
    temperature, num_ctx = params.pop("temperature", None), params.pop("num_ctx", None)
    data = {
        "temperature": start.temperature if temperature is None else temperature,
        "system": start.system if request.system is None else request.system or None,
        "system_mode": start.system_mode, "options": {**start.options, **params}, "hidden": start.hidden,
        "backends": list(start.backends), "policy": start.policy,
        "download": start.download.text if start.download else None,
        **{key: getattr(start, key) for key in LOAD_FIELDS},
        "messages": list(start.messages) if request.messages is None else request.messages,
        "license": start.license if request.license is None else request.license or None,
    }
    if num_ctx is not None:
        data["context_length"] = num_ctx
    name = normalize_name(request.name)
    try:
        settings = alias_fields(data, "create", {}, f"alias '{name}'")
    except RouteTableError as exc:
        raise BadRequest(request.where(_REQUEST_FIELD.get(exc.key, exc.key or "")) + exc.message) from None
    return RouteAlias(name=name, model=model, ttl=start.ttl, source="admin", **settings)
