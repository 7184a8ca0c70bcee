"""Request-log retention: rows older than LOG_RETENTION_DAYS, and the oldest beyond LOG_MAX_ROWS, go."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from django.conf import settings
from django.db.models import Q

from .models import RequestLog


def prune_logs(days: float | None = None, max_rows: int | None = None, now: datetime | None = None) -> int:
    """Delete expired rows; returns how many. 0 (or None from settings) disables a limit."""
    days = settings.LOG_RETENTION_DAYS if days is None else days
    max_rows = settings.LOG_MAX_ROWS if max_rows is None else max_rows
    now = now or datetime.now(timezone.utc)
    deleted = 0
    if days:
        deleted += RequestLog.objects.filter(started_at__lt=now - timedelta(days=days)).delete()[0]
    if max_rows:
        # The newest row that no longer fits: it and everything older goes (the index on
        # (started_at, id) makes this offset cheap).
        cutoff = list(RequestLog.objects.order_by("-started_at", "-id")
                      .values_list("started_at", "id")[max_rows:max_rows + 1])
        if cutoff:
            at, pk = cutoff[0]
            deleted += RequestLog.objects.filter(Q(started_at__lt=at) | Q(started_at=at, id__lte=pk)).delete()[0]
    return deleted
