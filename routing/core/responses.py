"""JSON answers, the one way every layer writes them."""
from __future__ import annotations

import orjson
from django.http import HttpResponse


def json_response(body, status: int = 200, request_id: str = "") -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    if request_id:
        response["X-Request-Id"] = request_id
    return response
