from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from routing.proxy import state


def admin_store_changed(sender, **kwargs):
    """An admin row (alias, defaults, endpoint, backend) was saved or deleted: this process reloads the
    admin's store once the change is committed (other processes see it within DB_CHECK_INTERVAL)."""
    transaction.on_commit(lambda: (built := state.built()) and built.registry.invalidate_admin_store())


def api_keys_changed(sender, **kwargs):
    """A key was saved or deleted: this process reads the keys again once the change is committed
    (other processes within KEY_CHECK_INTERVAL)."""
    transaction.on_commit(lambda: (built := state.built()) and built.keys.invalidate())


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self):
        from routing import checks  # noqa: F401  (registers the routes.yaml system check)
        from routing.models import Alias, ApiKey, Backend, DeclaredEndpoint, RouteDefaults

        # Any row of the admin's store: one invalidation, the same as for aliases.
        for model in (Alias, RouteDefaults, DeclaredEndpoint, Backend):
            label = model._meta.model_name
            post_save.connect(admin_store_changed, sender=model, dispatch_uid=f"routing.{label}.saved")
            post_delete.connect(admin_store_changed, sender=model, dispatch_uid=f"routing.{label}.deleted")
        post_save.connect(api_keys_changed, sender=ApiKey, dispatch_uid="routing.apikey.saved")
        post_delete.connect(api_keys_changed, sender=ApiKey, dispatch_uid="routing.apikey.deleted")
