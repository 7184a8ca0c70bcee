from django.urls import path

from . import compare, views

app_name = "history"
urlpatterns = [
    path("", views.history, name="list"),
    path("overview/", views.overview_page, name="overview"),
    path("usage/", views.usage_page, name="usage"),
    path("export/", views.export_view, name="export"),
    path("compare/<str:comparison_id>.json", compare.compare_status, name="compare-status"),
    path("<str:request_id>/replay/", compare.replay, name="replay"),
    path("<str:request_id>/compare/<str:comparison_id>/", compare.compare_page, name="compare"),
    path("<str:request_id>/", views.detail, name="detail"),
]
