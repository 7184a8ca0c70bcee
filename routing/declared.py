"""Endpoints declared in routes.yaml (`endpoints:`), answered with their fixed JSON; anything else that
no URL matched is a JSON 404, as Ollama answers."""
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .errors import NotFound, dialect_of, error_body
from .pipeline import json_response
from .registry import get_registry


@csrf_exempt
async def declared_endpoint(request: HttpRequest, path: str = "") -> HttpResponse:
    declared = (await get_registry().table()).endpoint(request.method, "/" + path)
    if declared is None:
        # Ollama's own words for an unknown path; OpenAI's error shape on /v1.
        return json_response(error_body(NotFound("404 page not found"), dialect_of(request.path)), 404)
    if request.method == "HEAD" or declared.body is None:
        return HttpResponse(status=declared.status)
    return json_response(declared.body, declared.status)
