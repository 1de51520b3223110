"""The console's URL map (namespace ``console``, mounted at ``/console/``)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from hub.console import views

app_name = "console"

urlpatterns = [
    path("", views.IndexView.as_view(), name="index"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="registration/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    # Django's LogoutView takes POST only (a sign-out link could be triggered by any page): the nav posts a form.
    path("logout/", auth_views.LogoutView.as_view(next_page="console:login"), name="logout"),
    path("t/<slug:tenant>/", views.TenantHomeView.as_view(), name="tenant"),
    path("t/<slug:tenant>/keys/", views.KeysView.as_view(), name="keys"),
    path("t/<slug:tenant>/keys/<int:key_id>/", views.KeyDetailView.as_view(), name="key"),
    path("t/<slug:tenant>/keys/<int:key_id>/revoke/", views.RevokeKeyView.as_view(), name="key-revoke"),
    path("t/<slug:tenant>/keys/<int:key_id>/rotate/", views.RotateKeyView.as_view(), name="key-rotate"),
    path("t/<slug:tenant>/members/", views.MembersView.as_view(), name="members"),
    path("t/<slug:tenant>/members/<int:user_id>/role/", views.MemberRoleView.as_view(), name="member-role"),
    path("t/<slug:tenant>/models/", views.ModelsView.as_view(), name="models"),
]
