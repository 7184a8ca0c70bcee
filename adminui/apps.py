from django.apps import AppConfig
from django.conf import settings


class AdminUIConfig(AppConfig):
    name = "adminui"
    verbose_name = "Proxy administration"

    def ready(self):
        from routing import observers

        from . import history_admin  # noqa: F401  (registers RequestLog in the admin)
        from .request_log import record_exchange

        if settings.REQUEST_LOG:
            observers.register(record_exchange)
