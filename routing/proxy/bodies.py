"""A request's JSON body, read once and checked before anything else looks at it.

The size is checked earlier still, on the request's head (`routing.security.access`, and the Twisted gate in
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

from routing.core.errors import BadRequest, PayloadTooLarge

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
    if depth_exceeds(body, MAX_JSON_DEPTH):
        raise BadRequest(f"request body nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return body


def depth_exceeds(value, limit: int) -> bool:
    """Whether `value` nests objects/arrays more than `limit` levels deep. A level at a time, never
    recursion; its cost is in the number of objects and arrays, not the size of the body.

    (Counting the body's brackets first, to skip this walk, cost more than the walk: 5 ms on an 8 MB
    conversation, whose few containers take microseconds to walk. Walking level by level, rather than
    pushing (child, depth) pairs on a stack, is 2.5 times faster on an agent's body of 600 containers.)"""
    level = [value]
    for _ in range(limit):
        nested = []
        for item in level:
            for child in (item.values() if type(item) is dict else item):
                if type(child) is dict or type(child) is list:
                    nested.append(child)
        if not nested:
            return False
        level = nested
    return True
