from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from . import checks  # noqa: F401  (registers the routes.yaml system check)
        from .models import Alias
        from .registry import admin_alias_changed

        post_save.connect(admin_alias_changed, sender=Alias, dispatch_uid="routing.alias.saved")
        post_delete.connect(admin_alias_changed, sender=Alias, dispatch_uid="routing.alias.deleted")
