from django.urls import path

from . import views

app_name = "history"
urlpatterns = [
    path("", views.history, name="list"),
    path("overview/", views.overview_page, name="overview"),
    path("export/", views.export_view, name="export"),
    path("<str:request_id>/", views.detail, name="detail"),
]
