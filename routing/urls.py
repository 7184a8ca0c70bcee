from django.urls import path

from . import ops, views

urlpatterns = [
    path("", views.root),
    path("health", ops.health),
    path("ready", ops.ready),
    path("metrics", ops.prometheus_metrics),
    path("api/version", views.version),
    path("api/tags", views.tags),
    path("api/show", views.show),
    path("api/chat", views.chat),
    path("api/generate", views.generate),
    path("v1/models", views.v1_models),
    path("v1/chat/completions", views.v1_chat),
    path("v1/completions", views.v1_completions),
]
