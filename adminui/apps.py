from django.apps import AppConfig
from django.conf import settings


class AdminUIConfig(AppConfig):
    name = "adminui"
    verbose_name = "Proxy administration"

    def ready(self):
        from routing import observers

        from . import admin  # noqa: F401  (admin site header and links)
        from .request_log import record_exchange

        if settings.REQUEST_LOG:
            observers.register(record_exchange)
