"""Endpoints declared in routes.yaml (`endpoints:`), answered with their fixed JSON; anything else that
no URL matched is a JSON 404, as Ollama answers."""
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from routing.core.errors import NotFound, error_body
from routing.core.paths import dialect_of
from routing.core.responses import json_response
from routing.proxy.state import current


@csrf_exempt
async def declared_endpoint(request: HttpRequest, path: str = "") -> HttpResponse:
    declared = (await current().registry.table()).endpoint(request.method, "/" + path)
    if declared is None:
        # Ollama's own words for an unknown path; OpenAI's error shape on /v1.
        return json_response(error_body(NotFound("404 page not found"), dialect_of(request.path)), 404)
    if request.method == "HEAD" or declared.body is None:
        return HttpResponse(status=declared.status)
    return json_response(declared.body, declared.status)
