"""The console's URL map (namespace ``console``, mounted at ``/console/``)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from hub.console import limits, prices, reports, usage, views, webhooks

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
    path("t/<slug:tenant>/keys/<int:key_id>/limits/", limits.KeyLimitsView.as_view(), name="key-limits"),
    path("t/<slug:tenant>/limits/", limits.TenantLimitsView.as_view(), name="limits"),
    path("t/<slug:tenant>/members/", views.MembersView.as_view(), name="members"),
    path("t/<slug:tenant>/members/<int:user_id>/role/", views.MemberRoleView.as_view(), name="member-role"),
    path(
        "t/<slug:tenant>/invitations/<int:invitation_id>/cancel/",
        views.CancelInvitationView.as_view(),
        name="invitation-cancel",
    ),
    path(
        "invitations/<int:invitation_id>/<str:answer>/", views.AnswerInvitationView.as_view(), name="invitation-answer"
    ),
    path("t/<slug:tenant>/models/", views.ModelsView.as_view(), name="models"),
    path("t/<slug:tenant>/webhooks/", webhooks.WebhooksView.as_view(), name="webhooks"),
    path(
        "t/<slug:tenant>/webhooks/<str:endpoint_id>/<str:action>/",
        webhooks.WebhookActionView.as_view(),
        name="webhook-action",
    ),
    path("t/<slug:tenant>/usage/", usage.TenantUsageView.as_view(), name="usage"),
    path("t/<slug:tenant>/usage.csv", usage.TenantUsageCsvView.as_view(), name="usage-csv"),
    path("t/<slug:tenant>/playground/", usage.PlaygroundView.as_view(), name="playground"),
    path("health.json", views.HealthJsonView.as_view(), name="health"),
    path("usage/", usage.OperatorUsageView.as_view(), name="operator-usage"),
    path("usage.csv", usage.OperatorUsageCsvView.as_view(), name="operator-usage-csv"),
    # reports: hub/console/reports.py
    path("t/<slug:tenant>/reports/", reports.ReportsView.as_view(), name="reports"),
    path(
        "t/<slug:tenant>/reports/<int:report_id>.<str:fmt>",
        reports.ReportDownloadView.as_view(),
        name="report-download",
    ),
    path("reports/", reports.OperatorReportsView.as_view(), name="operator-reports"),
    path("prices/", prices.PricesView.as_view(), name="prices"),
]
