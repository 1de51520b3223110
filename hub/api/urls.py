from django.urls import path, re_path

from hub.api import views

# The same routes under every base URL of the reference (/v1, /v2, /vision).
api_patterns = [
    path("models", views.ModelListView.as_view(), name="models"),
    path("models/<path:model_id>", views.ModelDetailView.as_view(), name="model-detail"),
    path("usage", views.UsageView.as_view(), name="usage"),
    path("costs", views.CostsView.as_view(), name="costs"),
    re_path(r"^.*$", views.unknown_url),
]
