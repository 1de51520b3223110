"""Rate limits and budgets in the console: the tenant's (set by operators) with every key's, and each key's
(set by the tenant's admins, on the key's page). Writes go through ``services.set_limits``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from accounts import selectors, services, usage
from accounts.limits import COST_PLACES, MAX_BUDGET, MAX_COST, MAX_RATE, Limits
from accounts.models import ApiKey, BudgetPeriod, Role, Tenant
from hub.console.scoping import TenantScopedView


class LimitsForm(forms.Form):
    """Empty fields mean no limit."""

    rpm = forms.IntegerField(label="Requests per minute", min_value=1, max_value=MAX_RATE, required=False)
    tpm = forms.IntegerField(label="Tokens per minute", min_value=1, max_value=MAX_RATE, required=False)
    budget = forms.IntegerField(
        label="Token budget", min_value=1, max_value=MAX_BUDGET, required=False, help_text="prompt + completion"
    )
    budget_period = forms.ChoiceField(label="Budget period", choices=BudgetPeriod.choices)
    max_streams = forms.IntegerField(label="Concurrent streams", min_value=1, max_value=MAX_RATE, required=False)
    cost_budget = forms.DecimalField(
        label="Money budget", min_value=COST_PLACES, max_value=MAX_COST, max_digits=18, decimal_places=6,
        required=False, help_text="per budget period, at the models' prices",
    )  # fmt: skip

    def __init__(self, *args: Any, owner: Tenant | ApiKey, **kwargs: Any) -> None:
        current = Limits.of(owner)
        super().__init__(*args, initial=current.as_dict(), **kwargs)
        if isinstance(owner, Tenant):
            del self.fields["max_streams"]  # streams are limited per key

    @property
    def limits(self) -> Limits:
        data = self.cleaned_data
        money = data.get("cost_budget")
        return Limits(data["rpm"], data["tpm"], data["budget"], data["budget_period"], data.get("max_streams"),
                      None if money is None else str(money))  # fmt: skip


def _period_totals(owner: Tenant | ApiKey) -> usage.Totals:
    if isinstance(owner, Tenant):
        return usage.period_totals(owner.pk, None, owner.budget_period, timezone.now())
    return usage.period_totals(owner.tenant_id, owner.pk, owner.budget_period, timezone.now())


def budget_used(owner: Tenant | ApiKey) -> int:
    """Tokens metered in the owner's current budget period (what the gateway's counter starts from)."""
    return _period_totals(owner).total_tokens


def money_spent(owner: Tenant | ApiKey) -> Decimal:
    """Money metered in the owner's current budget period, at each request's price."""
    return Decimal(_period_totals(owner).cost)


class TenantLimitsView(TenantScopedView):
    """``/console/t/<tenant>/limits/``: everyone reads; only operators change the tenant's own limits."""

    section = "limits"
    write_role = Role.OWNER

    def get(self, request: HttpRequest, tenant: str) -> HttpResponse:
        return self.render_page(LimitsForm(owner=self.tenant))

    def post(self, request: HttpRequest, tenant: str) -> HttpResponse:
        form = LimitsForm(request.POST, owner=self.tenant)
        if form.is_valid():
            if not request.user.is_superuser:
                raise PermissionDenied("only operators change a tenant's limits")
            services.set_limits(self.tenant, form.limits, actor=request.user)
            messages.success(request, "The tenant's limits are saved; they apply to the next request.")
            return redirect("console:limits", tenant=self.tenant.slug)
        return self.render_page(form)

    def render_page(self, form: LimitsForm) -> HttpResponse:
        keys = selectors.tenant_keys(self.request.user, self.tenant).filter(revoked_at__isnull=True)
        context = self.get_context_data(
            form=form, limits=Limits.of(self.tenant), used=budget_used(self.tenant),
            spent=format(money_spent(self.tenant).normalize(), "f"), currency=settings.HUB_CURRENCY.upper(),
            keys=[(k, Limits.of(k)) for k in keys], may_edit=self.request.user.is_superuser,
        )  # fmt: skip
        return render(self.request, "console/limits.html", context)


class KeyLimitsView(TenantScopedView):
    """POST ``/console/t/<tenant>/keys/<id>/limits/``: a key's limits, by the tenant's admins."""

    http_method_names = ["post"]
    section = "keys"
    write_role = Role.ADMIN

    def post(self, request: HttpRequest, tenant: str, key_id: int) -> HttpResponse:
        key = selectors.tenant_keys(request.user, self.tenant).filter(pk=key_id).first()
        if key is None:
            raise Http404("no such key")
        form = LimitsForm(request.POST, owner=key)
        if form.is_valid():
            services.set_limits(key, form.limits, actor=request.user)
            messages.success(request, f"Limits of {key.prefix} saved; they apply to the next request.")
        else:
            messages.error(
                request, "Limits not saved: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            )
        return redirect("console:key", tenant=self.tenant.slug, key_id=key.pk)
