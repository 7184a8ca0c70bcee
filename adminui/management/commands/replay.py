"""`manage.py replay`: logged requests run again on other aliases, compared in a table."""
import asyncio

from django.core.management.base import BaseCommand, CommandError

from adminui.models import RequestLog
from adminui.replay import Refused, Run, comparison, replay_all
from routing.proxy import state as app_state


class Command(BaseCommand):
    help = ("Run logged requests again through the proxy on other aliases (each a new logged request marked as "
            "a replay of the original) and print how each did beside the original.")

    def add_arguments(self, parser):
        parser.add_argument("ids", help="request ids, comma-separated (X-Request-Id, or the history's)")
        parser.add_argument("--alias", action="append", required=True, dest="aliases",
                            help="an alias (or LM Studio model) to run them on; repeat it to compare several")

    def handle(self, *args, ids, aliases, **options):
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        logs = {log.request_id: log for log in RequestLog.objects.filter(request_id__in=wanted)}
        if missing := [i for i in wanted if i not in logs]:
            raise CommandError(f"no logged request with id {', '.join(missing)}")
        state = app_state.current()
        try:
            results = asyncio.run(self._run(state, [logs[i] for i in wanted], aliases))
        except Refused as exc:
            raise CommandError(f"{exc} (nothing was sent)") from None
        finally:
            state.close_observers()          # what the request log still holds is written now
        for log, runs in results:
            self.stdout.write(f"\n{log.request_id}  {log.api} {log.endpoint}, "
                              f"logged {log.started_at:%Y-%m-%d %H:%M:%S}")
            self.stdout.write(comparison([Run.of_log(log)] + runs))

    async def _run(self, state, logs, aliases):
        try:
            return await replay_all(state, logs, aliases)
        finally:
            await state.aclose()
