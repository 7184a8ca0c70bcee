from django.contrib import admin
from django.urls import include, path, re_path

from routing.api.declared import declared_endpoint

urlpatterns = [
    path("admin/", admin.site.urls),
    path("history/", include("adminui.urls")),
    path("", include("routing.urls")),
    # Last: routes.yaml's declared endpoints, and a JSON 404 for everything else.
    re_path(r"^(?P<path>.*)$", declared_endpoint),
]

# JSON errors in the client's dialect on API paths; Django's own pages elsewhere. Never a traceback.
handler404 = "routing.api.ops.not_found"
handler500 = "routing.api.ops.server_error"
