from django.urls import path

from routing.api import ops, views

urlpatterns = [
    path("", views.root),
    path("health", ops.health),
    path("ready", ops.ready),
    path("metrics", ops.prometheus_metrics),
    path("api/version", views.version),
    path("api/tags", views.tags),
    path("api/show", views.show),
    path("api/ps", views.ps),
    path("api/chat", views.chat),
    path("api/copy", views.copy),
    path("api/delete", views.delete),
    path("api/generate", views.generate),
    path("api/embed", views.embed),
    path("api/embeddings", views.legacy_embeddings),
    path("api/pull", views.pull),
    path("api/push", views.push),
    path("api/create", views.create),
    path("api/blobs/<str:digest>", views.blob),
    path("v1/models", views.v1_models),
    path("v1/models/<path:model_id>", views.v1_model),
    path("v1/chat/completions", views.v1_chat),
    path("v1/completions", views.v1_completions),
    path("v1/embeddings", views.v1_embeddings),
    path("v1/responses", views.v1_responses),
    path("v1/messages", views.v1_messages),
]
