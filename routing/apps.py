from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from . import checks  # noqa: F401  (registers the routes.yaml system check)
        from .models import Alias, Backend, DeclaredEndpoint, RouteDefaults
        from .registry import admin_store_changed

        # Any row of the admin's store: one invalidation, the same as for aliases.
        for model in (Alias, RouteDefaults, DeclaredEndpoint, Backend):
            label = model._meta.model_name
            post_save.connect(admin_store_changed, sender=model, dispatch_uid=f"routing.{label}.saved")
            post_delete.connect(admin_store_changed, sender=model, dispatch_uid=f"routing.{label}.deleted")

        from .metrics import observe
        from .observers import register

        register(observe)
