from django.urls import path

from . import model_views, views

urlpatterns = [
    path("", views.root),
    path("api/version", views.version),
    path("api/tags", model_views.tags),
    path("api/show", model_views.show),
    path("api/ps", model_views.ps),
    path("api/chat", views.chat),
    path("api/generate", views.generate),
    path("api/embed", views.embed),
    path("api/embeddings", views.legacy_embeddings),
    path("api/pull", model_views.pull),
    path("api/push", model_views.push),
    path("api/create", model_views.create),
    path("api/blobs/<str:digest>", model_views.blob),
    path("v1/models", model_views.v1_models),
    path("v1/models/<path:model_id>", model_views.v1_model),
    path("v1/chat/completions", views.v1_chat),
    path("v1/completions", views.v1_completions),
    path("v1/embeddings", views.v1_embeddings),
]
