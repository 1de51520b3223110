"""Console pages. Thin: scoping is ``TenantScopedView``'s, reads go through ``accounts.selectors``, every write
through ``accounts.services`` with ``actor=request.user`` (so the services check the role again).

A new or rotated key's secret is rendered once, as the response to the POST that made it: it is never put
in the session, a message or a redirect, and the page is marked ``no-store`` so no cache keeps it.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from accounts import selectors, services
from accounts.limits import Limits
from accounts.models import ApiKey, Deployment, Invitation, Membership, Role, ServedModel, Tenant
from hub.console import health
from hub.console.forms import AddMemberForm, CreateKeyForm, EditKeyForm, RoleForm, grantable_roles
from hub.console.limits import LimitsForm, budget_used
from hub.console.scoping import ConsoleView, OperatorView, TenantScopedView


def error_text(exc: ValidationError) -> str:
    """A service's ValidationError as one line for a form or a message (the services raise plain strings)."""
    return "; ".join(exc.messages)


class IndexView(ConsoleView):
    """The landing page: the user's tenants; for operators (superusers) also every tenant and the catalog."""

    def get(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        context = self.get_context_data()
        roles = dict(Membership.objects.filter(user=user).values_list("tenant_id", "role"))
        context["tenants"] = [(t, Role(roles[t.pk]).label if t.pk in roles else "") for t in services.tenants_of(user)]
        context["invitations"] = services.invitations_for(user)
        if context["is_operator"]:
            context["all_tenants"] = Tenant.objects.annotate(
                n_members=Count("memberships", distinct=True),
                n_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True),
                n_models=Count("entitlements", distinct=True),
            )
            catalog = list(
                ServedModel.objects.prefetch_related(
                    Prefetch("deployments", queryset=Deployment.objects.order_by("base_url")), "fallback_links"
                )
            )
            deployments = [d for m in catalog for d in m.deployments.all()]
            states = health.check(deployments)
            for d in deployments:  # the prefetched objects the template iterates
                d.health = states[d.pk]
            context["catalog"] = catalog
        return render(request, "console/index.html", context)


class HealthJsonView(OperatorView):
    """``/console/health.json``: every deployment's health now, for the overview's badges to follow."""

    def get(self, request: HttpRequest) -> JsonResponse:
        states = health.check(list(Deployment.objects.all()))
        return JsonResponse({"checked_at": timezone.now().isoformat(), "deployments": {
            str(pk): state.as_dict() for pk, state in states.items()
        }})  # fmt: skip


class TenantHomeView(TenantScopedView):
    """``/console/t/<tenant>/``: the keys page is the tenant's home."""

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        return redirect("console:keys", tenant=self.tenant.slug)


# --- keys ------------------------------------------------------------------------------------------


class KeyScopedView(TenantScopedView):
    """Pages about one key: the key is looked up within the URL's tenant only (another tenant's id is a 404)."""

    section = "keys"
    write_role = Role.MEMBER  # members manage their own keys; the services limit them to those

    def get_key(self, key_id: int) -> ApiKey:
        key = selectors.tenant_keys(self.request.user, self.tenant).filter(pk=key_id).first()
        if key is None:
            raise Http404("no such key")
        return key

    def can_manage(self, key: ApiKey) -> bool:
        """Whether to show the key's controls; mirrors the services' rule (admins: all keys, members: their own)."""
        if self.has_role(Role.ADMIN):
            return True
        return self.has_role(Role.MEMBER) and key.created_by_id == self.request.user.pk

    def secret_response(self, key: ApiKey, secret: str, *, rotated: bool) -> HttpResponse:
        """The only place a secret is ever rendered: the answer to the POST that created it."""
        context = self.get_context_data(key=key, secret=secret, rotated=rotated)
        response = render(self.request, "console/secret_once.html", context)
        add_never_cache_headers(response)
        return response

    def back_to_keys(self) -> HttpResponseRedirect:
        return redirect("console:keys", tenant=self.tenant.slug)


class KeysView(KeyScopedView):
    """The tenant's keys and the form to create one."""

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        return self.render_page(CreateKeyForm(tenant=self.tenant))

    def post(self, request: HttpRequest, tenant: str) -> HttpResponse:
        form = CreateKeyForm(request.POST, tenant=self.tenant)
        if form.is_valid():
            try:
                issued = services.issue_key(
                    self.tenant,
                    name=form.cleaned_data["name"],
                    model_ids=form.model_ids,
                    expires_at=form.expires_at,
                    actor=request.user,
                )
            except ValidationError as exc:
                form.add_error(None, error_text(exc))
            else:
                return self.secret_response(issued.key, issued.secret, rotated=False)
        return self.render_page(form)

    def render_page(self, form: CreateKeyForm) -> HttpResponse:
        keys = (
            selectors.tenant_keys(self.request.user, self.tenant)
            .select_related("created_by")
            .prefetch_related(Prefetch("allowed_models", queryset=ServedModel.objects.order_by("id")))
        )
        rows = [(key, self.can_manage(key)) for key in keys]
        context = self.get_context_data(rows=rows, form=form)
        return render(self.request, "console/keys.html", context)


class KeyDetailView(KeyScopedView):
    """One key: its details, and for those who may manage it, the form to change its expiry and models."""

    def get(self, request: HttpRequest, tenant: str, key_id: int) -> HttpResponse:
        key = self.get_key(key_id)
        return self.render_page(key, EditKeyForm(key=key))

    def post(self, request: HttpRequest, tenant: str, key_id: int) -> HttpResponse:
        key = self.get_key(key_id)
        if key.status == "revoked":
            messages.error(request, "A revoked key cannot be changed.")
            return self.back_to_keys()
        form = EditKeyForm(request.POST, key=key)
        if form.is_valid():
            try:
                # Both changes or neither: a refused model list must not leave a new expiry behind.
                with transaction.atomic():
                    if form.expiry_changed:
                        services.set_key_expiry(key, form.expires_at, actor=request.user)
                    if form.models_changed:
                        services.set_key_models(key, form.model_ids, actor=request.user)
            except ValidationError as exc:
                form.add_error(None, error_text(exc))
            else:
                messages.success(request, f"Key {key.prefix} updated." if form.has_changed() else "Nothing changed.")
                return self.back_to_keys()
        return self.render_page(key, form)

    def render_page(self, key: ApiKey, form: EditKeyForm) -> HttpResponse:
        context = self.get_context_data(
            key=key, form=form, can_manage=self.can_manage(key), limits=Limits.of(key), budget_used=budget_used(key),
            limits_form=LimitsForm(owner=key), can_set_limits=self.has_role(Role.ADMIN),
        )  # fmt: skip
        return render(self.request, "console/key_detail.html", context)


class RevokeKeyView(KeyScopedView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, tenant: str, key_id: int) -> HttpResponse:
        key = services.revoke_key(self.get_key(key_id), actor=request.user)
        messages.success(request, f"Key {key.prefix} revoked: it stops working now.")
        return self.back_to_keys()


class RotateKeyView(KeyScopedView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, tenant: str, key_id: int) -> HttpResponse:
        try:
            issued = services.rotate_key(self.get_key(key_id), actor=request.user)
        except ValidationError as exc:
            messages.error(request, error_text(exc))
            return self.back_to_keys()
        return self.secret_response(issued.key, issued.secret, rotated=True)


# --- members -----------------------------------------------------------------------------------------


class MembersView(TenantScopedView):
    """Members and their roles; admins and owners add existing users and change roles."""

    section = "members"
    write_role = Role.ADMIN

    def form(self, data=None) -> AddMemberForm:
        operator = self.request.user.is_superuser
        return AddMemberForm(data, tenant=self.tenant, actor_role=self.role, operator=operator)

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        return self.render_page(self.form())

    def post(self, request: HttpRequest, tenant: str) -> HttpResponse:
        form = self.form(request.POST)
        if form.is_valid():
            who, role = form.cleaned_data["username"], Role(form.cleaned_data["role"])
            try:
                if form.operator:  # an operator's action: the user joins at once
                    services.add_member(self.tenant, who, role, actor=request.user)
                    note = f"{who.get_username()} added as {role.label.lower()}."
                else:
                    services.invite_member(self.tenant, who, role, actor=request.user)
                    note = f"{who} is invited as {role.label.lower()}: they join when they accept it in their console."
            except ValidationError as exc:
                form.add_error(None, error_text(exc))
            else:
                messages.success(request, note)
                return redirect("console:members", tenant=self.tenant.slug)
        return self.render_page(form)

    def render_page(self, form: AddMemberForm) -> HttpResponse:
        memberships = Membership.objects.filter(tenant=self.tenant).select_related("user").order_by("user__username")
        is_owner = self.role == Role.OWNER
        # Admins cannot touch owners (the services refuse it); don't offer them the control.
        rows = [(m, self.has_role(Role.ADMIN) and (is_owner or m.role != Role.OWNER)) for m in memberships]
        invitations = Invitation.objects.pending().filter(tenant=self.tenant).order_by("username")
        context = self.get_context_data(rows=rows, form=form, role_choices=grantable_roles(self.role),
                                        invitations=invitations if self.has_role(Role.ADMIN) else [])  # fmt: skip
        return render(self.request, "console/members.html", context)


class CancelInvitationView(TenantScopedView):
    http_method_names = ["post"]
    section = "members"
    write_role = Role.ADMIN

    def post(self, request: HttpRequest, tenant: str, invitation_id: int) -> HttpResponse:
        services.cancel_invitation(self.tenant, invitation_id, actor=request.user)
        messages.success(request, "Invitation cancelled.")
        return redirect("console:members", tenant=self.tenant.slug)


class AnswerInvitationView(ConsoleView):
    """``POST /console/invitations/<id>/accept|decline/``: the invited user's answer (404 for anyone else)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, invitation_id: int, answer: str) -> HttpResponse:
        if answer not in ("accept", "decline"):
            raise Http404("no such answer")
        try:
            membership = services.answer_invitation(invitation_id, request.user, accept=answer == "accept")
        except Invitation.DoesNotExist:
            raise Http404("no such invitation") from None
        if membership is None:
            messages.success(request, "Invitation declined.")
            return redirect("console:index")
        messages.success(request, f"You joined {membership.tenant.name} as {Role(membership.role).label.lower()}.")
        return redirect("console:keys", tenant=membership.tenant.slug)


class MemberRoleView(TenantScopedView):
    """Change one member's role (POST only; the member is looked up within the URL's tenant)."""

    http_method_names = ["post"]
    section = "members"
    write_role = Role.ADMIN

    def post(self, request: HttpRequest, tenant: str, user_id: int) -> HttpResponse:
        membership = Membership.objects.filter(tenant=self.tenant, user_id=user_id).select_related("user").first()
        if membership is None:
            raise Http404("no such member")
        form = RoleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Pick a valid role.")
        else:
            role = Role(form.cleaned_data["role"])
            try:
                services.set_role(self.tenant, membership.user, role, actor=request.user)
            except ValidationError as exc:
                messages.error(request, error_text(exc))
            else:
                messages.success(request, f"{membership.user.get_username()} is now {role.label.lower()}.")
        return HttpResponseRedirect(reverse("console:members", kwargs={"tenant": self.tenant.slug}))


# --- models --------------------------------------------------------------------------------------------


class ModelsView(TenantScopedView):
    """The models the tenant may use, with the limits clients see as ``meta_data``."""

    section = "models"

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        models = list(
            selectors.tenant_models(request.user, self.tenant).order_by("id").prefetch_related("fallback_links")
        )
        # a model's fallbacks as this tenant's keys reach them: only those it may use (others are never tried)
        usable = {m.id for m in models}
        for m in models:
            m.usable_fallbacks = [link for link in m.fallback_links.all() if link.fallback_id in usable]
        return render(request, "console/models.html", self.get_context_data(models=models))
