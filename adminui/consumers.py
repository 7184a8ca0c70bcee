"""The live-history WebSocket (`ws/history/`): pushes each new log row that matches the page's filters."""
from __future__ import annotations

from urllib.parse import parse_qs

import orjson
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from routing.security.access import host_refusal
from routing.security.hosts import same_origin

from .filters import HistoryFilter
from .live import GROUP, broadcaster


def same_origin_and_allowed_host(scope) -> bool:
    """The page that opens the socket is this server's own, scheme, host and port alike (a page on
    another port of the same host is another site, and the browser sends it the admin's cookie), on a
    host the host policy answers."""
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    host = headers.get("host", "")
    return host_refusal(host) is None and same_origin(headers.get("origin", ""), scope.get("scheme", "ws"), host)


class HistoryConsumer(AsyncWebsocketConsumer):
    """Staff with the request log's view permission (the session comes from AuthMiddlewareStack), from
    this server's own pages; the query string holds the page's filters."""

    async def connect(self):
        user = self.scope.get("user")
        if not same_origin_and_allowed_host(self.scope) or not await _may_read_history(user):
            await self.close(code=4403)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode(), keep_blank_values=True)
        self.filters = HistoryFilter({key: values[-1] for key, values in query.items()})
        if not self.filters.is_valid() or not self.filters.is_live():
            await self.close(code=4400)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.listening = True
        broadcaster.listeners += 1
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "listening", False):
            self.listening = False
            broadcaster.listeners -= 1
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def history_rows(self, event):
        """A batch written by the request log (`live.Broadcaster`)."""
        rows = [row["html"] for row in event["rows"] if self.filters.matches(row)]
        if rows:
            await self.send(text_data=orjson.dumps({"rows": rows[::-1]}).decode())


async def _may_read_history(user) -> bool:
    if user is None or not user.is_authenticated or not user.is_staff:
        return False
    return await database_sync_to_async(user.has_perm)("adminui.view_requestlog")
