from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("routing.urls")),
]

# JSON errors in the client's dialect on API paths; Django's own pages elsewhere. Never a traceback.
handler404 = "routing.ops.not_found"
handler500 = "routing.ops.server_error"
