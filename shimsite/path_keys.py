"""Keys in the path (`/k/<key>/api/tags`), taken off before anything else sees the request.

An ASGI middleware in front of the whole HTTP application: for a path under /k/<key>/ it rewrites
`scope["path"]` and `scope["raw_path"]` to the path without the key and sends the key on as the
request's `Authorization: Bearer` (replacing any key header the client sent), so that routing, the head
gate, CORS, the views, the history and the metrics only ever see the plain path. Under Daphne's fast path
the Twisted gate has already done the same (`shimsite.server`, which also keeps the key out of Daphne's
access log); this covers the stock path and any other ASGI server.
"""
from __future__ import annotations

import logging

from routing.core.paths import mask_path_key, split_path_key

KEY_HEADERS = (b"authorization", b"x-api-key")


def with_key_header(headers, key: str) -> list:
    return [(name, value) for name, value in headers if name.lower() not in KEY_HEADERS] + [
        (b"authorization", b"Bearer " + key.encode("latin-1", "replace"))]


def without_key(raw_path: bytes | None) -> bytes | None:
    if not raw_path or not raw_path.startswith(b"/k/"):
        return raw_path
    return b"/" + raw_path[3:].partition(b"/")[2]


class PathKeys:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path, key = split_path_key(scope["path"])
            if key:
                scope = {**scope, "path": path, "raw_path": without_key(scope.get("raw_path")),
                         "headers": with_key_header(scope["headers"], key)}
        await self.app(scope, receive, send)


class MaskedAccessLog(logging.Filter):
    """For `manage.py runserver`'s access lines (logger `django.channels.server`, shown with DEBUG): the
    path they name, with a key in it masked. (The `daphne` command's own access log writes to a stream,
    past logging: with FAST_PATH=false it shows the path as sent, see docs/security.md.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, dict) and isinstance(record.args.get("path"), str):
            record.args = {**record.args, "path": mask_path_key(record.args["path"])}
        return True
