"""`manage.py keys create NAME | list | revoke NAME`: the API keys, one per person (`routing.models.ApiKey`).

`create` prints the new key alone on the last line of its output, once: only its hash and prefix are
stored, so it cannot be shown again (a lost key is revoked and a new one made).
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from routing.config.durations import parse_duration
from routing.models import ApiKey
from routing.security.keys import new_key, parse_scope

DAYS = re.compile(r"^(\d+)d$")


def expiry(text: str) -> datetime | None:
    """When a key made now for `text` (Go-style `720h`, or days: `30d`) expires; None for never."""
    days = DAYS.match(text.strip())
    try:
        seconds = int(days.group(1)) * 86400 if days else parse_duration(text)
    except ValueError as exc:
        raise CommandError(f"--expires: {exc}") from None
    return None if math.isinf(seconds) else datetime.now(timezone.utc) + timedelta(seconds=seconds)


def limit(value: int | None) -> str:
    return "-" if value is None else str(value)


class Command(BaseCommand):
    help = "Create, list and revoke API keys (one per person, with its models and limits)."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="make a key; it is printed once, on the last line")
        create.add_argument("name", help="who holds it (unique; shown in the history)")
        create.add_argument("--aliases", default="", help="models it may use: names and patterns, "
                                                          "comma-separated (coder,chat*); default all")
        create.add_argument("--max-concurrent", type=int, help="requests open at once")
        create.add_argument("--requests-per-minute", type=int)
        create.add_argument("--tokens-per-day", type=int, help="prompt + completion tokens per UTC day")
        create.add_argument("--expires", help="lifetime: 30d, 720h, 90m; default never")
        sub.add_parser("list", help="every key: name, prefix, scope, limits, last used, enabled")
        revoke = sub.add_parser("revoke", help="disable a key: refused within about a second everywhere")
        revoke.add_argument("name")

    def handle(self, *args, action, **options):
        getattr(self, f"handle_{action}")(**options)

    def handle_create(self, name, aliases, max_concurrent, requests_per_minute, tokens_per_day, expires,
                      **options):
        for option, value in (("--max-concurrent", max_concurrent), ("--requests-per-minute", requests_per_minute),
                              ("--tokens-per-day", tokens_per_day)):
            if value is not None and value < 1:
                raise CommandError(f"{option} must be at least 1")
        key = new_key()
        row = ApiKey(name=name.strip(), aliases=", ".join(parse_scope(aliases)), max_concurrent=max_concurrent,
                     requests_per_minute=requests_per_minute, tokens_per_day=tokens_per_day,
                     expires_at=expiry(expires) if expires else None)
        if not row.name:
            raise CommandError("a key needs a name")
        row.set_key(key)
        try:
            row.save()
        except IntegrityError:
            raise CommandError(f"a key named {row.name!r} exists already") from None
        self.stdout.write(f"key {row.name!r} created ({row.scope}); it is shown once, here:")
        self.stdout.write(key)

    def handle_list(self, **options):
        rows = [(k.name, k.prefix + "…", k.scope, limit(k.max_concurrent), limit(k.requests_per_minute),
                 limit(k.tokens_per_day), f"{k.expires_at:%Y-%m-%d %H:%M}" if k.expires_at else "-",
                 f"{k.last_used_at:%Y-%m-%d %H:%M:%S}" if k.last_used_at else "never",
                 "yes" if k.enabled else "no") for k in ApiKey.objects.all()]
        headings = ("NAME", "PREFIX", "SCOPE", "CONCURRENT", "PER MINUTE", "TOKENS/DAY", "EXPIRES",
                    "LAST USED", "ENABLED")
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headings)]
        for row in [headings, *rows]:
            self.stdout.write("  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths)).rstrip())

    def handle_revoke(self, name, **options):
        if not ApiKey.objects.filter(name=name).exists():
            raise CommandError(f"no key named {name!r}")
        for row in ApiKey.objects.filter(name=name):
            row.enabled = False
            row.save()  # through save(): this process's key store is told at once
        self.stdout.write(f"key {name!r} revoked")
