from django.contrib import admin
from django.urls import include, path

from hub import views
from hub.api.paths import BASE_PATHS
from hub.api.urls import api_patterns

urlpatterns = [
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    *[path(f"{base}/", include((api_patterns, "api"), namespace=base)) for base in BASE_PATHS],
]
