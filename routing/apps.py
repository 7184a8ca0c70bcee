from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self):
        from . import checks  # noqa: F401  (registers the routes.yaml system check)
        from .metrics import observe
        from .observers import register

        register(observe)
