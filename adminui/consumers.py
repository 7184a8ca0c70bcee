"""The live-history WebSocket (`ws/history/`): pushes each new log row that matches the page's filters."""
from __future__ import annotations

from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
import orjson

from .filters import HistoryFilter
from .live import GROUP, broadcaster


class HistoryConsumer(AsyncWebsocketConsumer):
    """Staff only (the session comes from AuthMiddlewareStack); the query string holds the page's filters."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
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
