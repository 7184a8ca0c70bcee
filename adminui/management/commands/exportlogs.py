"""`manage.py exportlogs`: the request log as fine-tuning JSONL or CSV, streamed in constant memory."""
import sys
from datetime import datetime, timedelta, timezone

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from adminui import export
from adminui.filters import HistoryFilter
from adminui.models import RequestLog
from routing.config.durations import parse_duration


def since(value: str) -> datetime:
    """The start of the last DURATION: seconds or a Go duration ("90m", "24h"), or days ("7d")."""
    try:
        seconds = float(value[:-1]) * 86400 if value.endswith("d") else parse_duration(value)
        return datetime.now(timezone.utc) - timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        raise CommandError(f"--since: not a duration: {value!r} (e.g. 90m, 24h, 7d)") from None


class Command(BaseCommand):
    help = ("Export the request log: conversations as OpenAI chat fine-tuning JSONL, or one CSV row per "
            "request. Truncated or redacted rows are left out of the JSONL and counted on stderr.")

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=sorted(export.FORMATS), default="jsonl")
        parser.add_argument("--since", type=since, help="only the last DURATION (90m, 24h, 7d)")
        parser.add_argument("--alias", help="only requests that matched this alias")
        parser.add_argument("--status", choices=["ok", "error"], help="only answered or only failed requests")
        parser.add_argument("--out", help="write to this file (default: standard output)")

    def handle(self, *args, format, since=None, alias=None, status=None, out=None, **options):
        form = HistoryFilter({"alias": alias or "", "status": status or "", "since": since})
        if not form.is_valid():
            raise CommandError(form.errors.as_text())
        qs = form.apply(RequestLog.objects.all())
        progress = tqdm(total=qs.count() if sys.stderr.isatty() else None, unit=" rows", file=sys.stderr,
                        disable=not sys.stderr.isatty())
        skipped: dict[str, int] = {}
        counted = _counting(export.rows(qs, format), progress)
        lines = export.FORMATS[format][1](counted, skipped)
        target = open(out, "wb") if out else sys.stdout.buffer
        try:
            _write(lines, target)
        finally:
            progress.close()
            if out:
                target.close()
        if summary := export.skipped_summary(skipped):
            self.stderr.write(summary)


def _counting(rows, progress):
    for row in rows:
        yield row
        progress.update()


def _write(lines, target, batch: int = 1000):
    """Lines written a batch at a time (one write per thousand rows, not per row)."""
    pending = []
    for line in lines:
        pending.append(line)
        if len(pending) >= batch:
            target.write(b"".join(pending))
            pending.clear()
    target.write(b"".join(pending))
    target.flush()
