"""Live history: each written batch of log rows is broadcast to the `request-history` Channels group.

The writer thread renders each row's table HTML once (the same `_row.html` the list page uses), and
schedules the `group_send` on the server's event loop, the loop the channel layer belongs to.
"""
from __future__ import annotations

import asyncio
import logging

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.template.loader import render_to_string

from routing.core.outage import OutageLog

from .models import RequestLog

log = logging.getLogger("routing.request_log")

GROUP = "request-history"
MESSAGE_TYPE = "history.rows"


def live_row(row: dict) -> dict:
    """What a consumer needs to filter a row and show it (plain values: channels_redis uses msgpack)."""
    entry = RequestLog(**row)
    return {
        "html": render_to_string("adminui/_row.html", {"log": entry}),
        "request_id": entry.request_id,
        "alias": entry.alias,
        "requested_model": entry.requested_model,
        "upstream_model": entry.upstream_model,
        "key_name": entry.key_name,
        "api": entry.api,
        "status": entry.status,
    }


class Broadcaster:
    """Called by the writer after each batch. `loop` is set by the observer (it runs on that loop).

    Rendering a row costs ~0.5 ms of CPU, so with the in-memory layer (every listener is in this
    process) nothing is rendered while no history page is open; `listeners` is kept by the consumer.
    """

    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.listeners = 0
        self.outage = OutageLog(log)  # the channel layer (Redis) away: said once, and once back

    def remember_loop(self):
        if self.loop is None:
            try:
                self.loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside any loop (a sync test): nothing to broadcast to
                pass

    def __call__(self, batch: list[dict]):
        loop, layer = self.loop, get_channel_layer()
        if loop is None or loop.is_closed() or layer is None:
            return
        if isinstance(layer, InMemoryChannelLayer) and not self.listeners:
            return
        message = {"type": MESSAGE_TYPE, "rows": [live_row(row) for row in batch]}
        future = asyncio.run_coroutine_threadsafe(layer.group_send(GROUP, message), loop)
        future.add_done_callback(self._sent)

    def _sent(self, future):
        """Say once that the channel layer (Redis) is away, and once that it is back: the history pages
        reload meanwhile (history.js)."""
        failure = None if future.cancelled() else future.exception()
        if failure is None:
            self.outage.recovered("live history: broadcasting again")
        else:
            self.outage.failed("live history: broadcasting failed (%s); pages reload until it works again",
                               failure, level=logging.ERROR)


broadcaster = Broadcaster()
