"""The one place the console enforces tenant scoping.

Every page under ``/console/t/<tenant>/`` is a ``TenantScopedView``: it signs anonymous users in first,
answers 404 to anyone with no role in the tenant (the same answer as for a tenant that does not exist, so
the console never confirms a tenant's name to an outsider), and 403 to members below the role the view
declares for reading (``minimum_role``) or writing (``write_role``). Views never check roles themselves;
the services check again (defence in depth), and their ``PermissionDenied`` is rendered as the same 403.
The console's streaming endpoints (``hub/console/live.py``: live usage, the playground's chat) are Channels
consumers rather than views; they apply the same ``tenant_of`` and ``check_role``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import View

from accounts.models import ROLE_RANK, Role, Tenant
from accounts.services import role_of, tenants_of

# Methods that only read; everything else needs ``write_role``.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def tenant_of(user: Any, slug: str | None) -> Tenant:
    """The tenant the URL names, for a user with a role in it; else 404, whether or not it exists."""
    tenant = Tenant.objects.filter(slug=slug).first() if slug else None
    if tenant is None or not getattr(user, "is_authenticated", False) or role_of(user, tenant) is None:
        raise Http404("no such page")
    return tenant


def check_role(role: Role, needed: Role) -> None:
    if ROLE_RANK[role] < ROLE_RANK[needed]:
        raise PermissionDenied("not allowed")


class ConsoleView(LoginRequiredMixin, View):
    """Any console page: signed-in users only; anonymous users are sent to the sign-in page."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        """What the layout needs on every page: the tenants for the switcher, the operator flag."""
        user = self.request.user
        return {
            "nav_tenants": tenants_of(user).only("slug", "name"),
            "is_operator": bool(getattr(user, "is_superuser", False)),
            **kwargs,
        }


class TenantScopedView(ConsoleView):
    """A page of one tenant, named by the URL's ``<slug:tenant>``.

    Sets ``self.tenant`` and ``self.role`` before the handler runs. Subclasses declare ``minimum_role``
    (to read) and ``write_role`` (to POST); the default lets every member read and only admins write.
    """

    minimum_role: Role = Role.VIEWER
    write_role: Role = Role.ADMIN
    # Which page of the tenant this is: the nav highlights it and the switcher keeps it.
    section: str = ""

    tenant: Tenant
    role: Role

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Viewers read only: refuse, at import time, a view that would let them write."""
        super().__init_subclass__(**kwargs)
        if ROLE_RANK[cls.write_role] <= ROLE_RANK[Role.VIEWER]:
            raise ImproperlyConfigured(f"{cls.__name__}.write_role must be above viewer")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Sign-in first: an anonymous visitor must learn nothing about tenants, not even a 404.
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        self.tenant = tenant_of(request.user, kwargs.get("tenant"))
        self.role = role_of(request.user, self.tenant)
        try:
            check_role(self.role, self.minimum_role if request.method in SAFE_METHODS else self.write_role)
            return super().dispatch(request, *args, **kwargs)
        except PermissionDenied:
            # The console's own 403 page, with the layout: the project has no global 403 template.
            return render(request, "console/403.html", self.get_context_data(), status=403)

    def has_role(self, minimum: Role) -> bool:
        """For templates: whether to show a control (the mixin and the services still enforce)."""
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            tenant=self.tenant,
            role=self.role,
            section=self.section,
            section_url=f"console:{self.section}" if self.section else "console:keys",
            can_write=self.has_role(self.write_role),
            **kwargs,
        )


class OperatorView(ConsoleView):
    """A page for operators (superusers) only: across tenants. Everyone else gets the console's 403."""

    section: str = ""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        if not request.user.is_superuser:
            return render(request, "console/403.html", self.get_context_data(), status=403)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(section=self.section, **kwargs)
