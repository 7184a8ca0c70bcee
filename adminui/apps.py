from django.apps import AppConfig


class AdminUIConfig(AppConfig):
    name = "adminui"
    verbose_name = "Proxy administration"

    def ready(self):
        from . import history_admin  # noqa: F401  (registers RequestLog in the admin)
        from . import keys_admin  # noqa: F401  (registers ApiKey in the admin)
