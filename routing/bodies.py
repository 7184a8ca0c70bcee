"""A request's JSON body, read once and checked before anything else looks at it.

The size is checked earlier still, on the request's head (`routing.access`, and the Twisted gate in
`shimsite.server` for chunked bodies); here: valid JSON, an object, and not nested deeper than
`MAX_JSON_DEPTH`. The depth matters because everything downstream walks the body recursively: orjson
refuses to serialise beyond 254 levels (the request log's row, the upstream body), Python's recursion
limit is 1000, and orjson parses up to 1024. A body deep enough to break any of them is refused here,
as a 400 the pipeline still logs.
"""
from __future__ import annotations

import orjson
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from .errors import BadRequest, PayloadTooLarge

# Well under orjson's 254-level serialisation limit, so that an accepted body can always be wrapped a
# few levels deeper (upstream bodies, log rows) and written; far deeper than any real request needs.
MAX_JSON_DEPTH = 64


def read_json_object(request: HttpRequest) -> dict:
    """The request's JSON object body, or a BadRequest/PayloadTooLarge that says what is wrong."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge("request body too large (MAX_REQUEST_BYTES)") from None
    return parse_json_object(raw)


def parse_json_object(raw: bytes) -> dict:
    """`raw` parsed as a JSON object no deeper than MAX_JSON_DEPTH."""
    if not raw.strip():
        raise BadRequest("missing request body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise BadRequest(f"request body nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
        raise BadRequest(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    # Cheap first: a body with fewer brackets than the limit cannot be too deep (bytes.count runs in C).
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_DEPTH and depth_exceeds(body, MAX_JSON_DEPTH):
        raise BadRequest(f"request body nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return body


def depth_exceeds(value, limit: int) -> bool:
    """Whether `value` nests objects/arrays more than `limit` levels deep. Iterative: never recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if type(item) is dict else item
        stack.extend((child, depth + 1) for child in children if type(child) in (dict, list))
    return False
