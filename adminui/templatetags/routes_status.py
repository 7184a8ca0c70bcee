"""`{% routes_error %}`: the routes.yaml error the server is living with, for the top of admin pages."""
from django import template

from routing.proxy.state import current

register = template.Library()


@register.inclusion_tag("admin/routes_error.html")
def routes_error():
    registry = current().registry
    registry.file_table()  # look at the file now, so a fresh break shows on this very page
    return {"error": registry.error, "path": registry.path}
