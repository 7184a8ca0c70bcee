from django.core.management.base import BaseCommand

from adminui.retention import prune_logs


class Command(BaseCommand):
    help = "Delete request-log rows older than LOG_RETENTION_DAYS and the oldest beyond LOG_MAX_ROWS."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, help="keep this many days (default: LOG_RETENTION_DAYS)")
        parser.add_argument("--max-rows", type=int, help="keep at most this many rows (default: LOG_MAX_ROWS)")

    def handle(self, *args, days=None, max_rows=None, **options):
        deleted = prune_logs(days, max_rows)
        self.stdout.write(f"deleted {deleted} request log rows")
