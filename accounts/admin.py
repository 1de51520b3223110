"""The operator's Django admin. A new or rotated key's secret is shown once, in the response."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse

from accounts import services
from accounts.models import (
    ApiKey,
    Deployment,
    Membership,
    ModelFallback,
    ModelPrice,
    ServedModel,
    Tenant,
    TenantEntitlement,
    UsageRecord,
)


class ChosenAutocompleteSelect(AutocompleteSelect):
    """Django's autocomplete select, which redraws an invalid form with the posted ids. Django 5.2's
    ``optgroups`` filters the remote model by them as they came, so a posted "NaN" was a 500 (``ValueError:
    Field 'id' expected a number``) instead of the form's "Select a valid choice" error: ids the target field
    cannot read are dropped before that query (the form has already refused them)."""

    def optgroups(self, name: str, value: list, attr: dict | None = None) -> list:
        target = self.field.target_field
        return super().optgroups(name, [v for v in value if _readable(target, v)], attr)


def _readable(field, value) -> bool:
    try:
        field.get_prep_value(field.to_python(value))
    except (ValidationError, ValueError, TypeError, OverflowError):
        return False
    return True


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.autocomplete_fields:
            kwargs["widget"] = ChosenAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class EntitlementInline(admin.TabularInline):
    model = TenantEntitlement
    extra = 0
    fields = ["model", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_active", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline, EntitlementInline]


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0
    fields = ["base_url", "upstream_model", "api_key", "enabled"]


class PriceInline(admin.TabularInline):
    """The model's price history: a new row from a date on; past rows keep the cost their usage was charged."""

    model = ModelPrice
    extra = 0
    fields = ["effective_from", "input_per_million", "cached_input_per_million", "output_per_million",
              "per_audio_minute"]  # fmt: skip


class FallbackForm(forms.ModelForm):
    class Meta:
        model = ModelFallback
        fields = ["fallback", "position", "on"]

    def clean(self):
        data = super().clean()
        model, fallback = getattr(self.instance, "model", None), data.get("fallback")
        if model is not None and fallback is not None and (why := ModelFallback.mismatch(model, fallback)):
            raise forms.ValidationError(why)
        return data


class FallbackInline(admin.TabularInline):
    """Where the model's requests go when it cannot answer them, lowest position first (``set_fallbacks``)."""

    model = ModelFallback
    form = FallbackForm
    fk_name = "model"
    extra = 0


@admin.register(ServedModel)
class ServedModelAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "enabled", "max_sequence_length", "max_output_length", "hidden_size", "owned_by"]
    list_filter = ["kind", "enabled"]
    search_fields = ["id"]
    inlines = [DeploymentInline, FallbackInline, PriceInline]


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["tenant", "name", "all_models", "allowed_models", "expires_at"]

    def clean(self):
        data = super().clean()
        tenant = data.get("tenant") or getattr(self.instance, "tenant", None)
        chosen = data.get("allowed_models")
        if tenant is not None and chosen:
            entitled = set(TenantEntitlement.objects.filter(tenant=tenant).values_list("model_id", flat=True))
            outside = [m.id for m in chosen if m.id not in entitled]
            if outside:
                raise ValidationError(f"tenant {tenant.slug} is not entitled to: {', '.join(outside)}")
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = ["prefix", "name", "tenant", "status", "created_at", "expires_at", "last_used_at"]
    list_filter = ["tenant", "revoked_at"]
    search_fields = ["prefix", "name", "tenant__slug"]
    filter_horizontal = ["allowed_models"]
    actions = ["revoke_keys", "rotate_keys"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["tenant", "prefix", "created_by", "created_at", "revoked_at", "last_used_at", "previous_valid_until"]

    def get_fields(self, request, obj=None):
        fields = ["tenant", "name", "all_models", "allowed_models", "expires_at"]
        if obj is not None:
            fields = [
                "prefix",
                *fields,
                "created_by",
                "created_at",
                "revoked_at",
                "last_used_at",
                "previous_valid_until",
            ]
        return fields

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        # New keys go through the service, which generates and hashes the secret.
        issued = services.issue_key(
            form.cleaned_data["tenant"],
            name=form.cleaned_data["name"],
            model_ids=None,
            expires_at=form.cleaned_data["expires_at"],
            actor=None,
        )
        issued.key.created_by = request.user
        issued.key.all_models = form.cleaned_data["all_models"]
        issued.key.save(update_fields=["created_by", "all_models"])
        obj.pk = issued.key.pk
        obj._state.adding = False
        obj._shown_secret = issued.secret

    def response_add(self, request, obj, post_url_continue=None):
        return self._show_secrets(request, [(obj, obj._shown_secret)], "API key created")

    def _show_secrets(self, request, pairs, title):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "pairs": pairs,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/accounts/apikey/secret_once.html", context)

    @admin.action(description="Revoke selected keys (takes effect on the next request)")
    def revoke_keys(self, request, queryset):
        for key in queryset:
            services.revoke_key(key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).", messages.SUCCESS)

    @admin.action(description="Rotate selected keys (old secret valid for the grace period)")
    def rotate_keys(self, request, queryset):
        pairs = []
        for key in queryset:
            try:
                issued = services.rotate_key(key)
            except ValidationError as exc:
                self.message_user(request, f"{key.prefix}: {'; '.join(exc.messages)}", messages.ERROR)
                continue
            pairs.append((issued.key, issued.secret))
        if pairs:
            return self._show_secrets(request, pairs, "API keys rotated")
        return None


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "api_key", "model", "route", "total_tokens", "cached_tokens", "cost",
                    "status_code", "streamed"]  # fmt: skip
    list_filter = ["tenant", "model", "route", "streamed", "aborted"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
