from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerView

from hub import metrics, views
from hub.api.paths import BASE_PATHS
from hub.api.urls import api_patterns

urlpatterns = [
    path("", RedirectView.as_view(url="/console/", permanent=False), name="home"),
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path("metrics", metrics.view, name="metrics"),
    path("console/", include("hub.console.urls")),
    path("admin/", admin.site.urls),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="openapi"), name="redoc"),
    *[path(f"{base}/", include((api_patterns, "api"), namespace=base)) for base in BASE_PATHS],
]

handler404 = "hub.api.views.not_found"  # OpenAI's error for an API route asked without /v1
