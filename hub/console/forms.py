"""Console forms. They validate input and turn it into service arguments; they never write."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import ROLE_RANK, ApiKey, Membership, Role, ServedModel, Tenant

ALL_MODELS = "all"
SELECTED_MODELS = "selected"


def expiry_from_date(day: date | None) -> datetime | None:
    """A "valid through" date means the key works for all of that day (UTC): it expires at the next midnight."""
    if day is None:
        return None
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def date_from_expiry(expires_at: datetime | None) -> date | None:
    """The inverse of ``expiry_from_date``, for showing a key's expiry in the form."""
    if expires_at is None:
        return None
    return (expires_at.astimezone(UTC) - timedelta(microseconds=1)).date()


def entitled_model_choices(tenant: Tenant) -> list[tuple[str, str]]:
    """The tenant's entitled models. Disabled ones are listed (marked) so editing a key never drops them silently."""
    models = ServedModel.objects.filter(entitlements__tenant=tenant).order_by("id")
    return [(m.id, f"{m.id} ({m.kind})" if m.enabled else f"{m.id} ({m.kind}, disabled)") for m in models]


class KeyForm(forms.Form):
    """Expiry and model scope of a key: shared by the create and the edit form."""

    expires_on = forms.DateField(
        required=False,
        label="Valid through (UTC)",
        help_text="Leave empty for a key that does not expire.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    scope = forms.ChoiceField(
        choices=[(ALL_MODELS, "All models of the tenant, including ones added later"), (SELECTED_MODELS, "Only:")],
        initial=ALL_MODELS,
        widget=forms.RadioSelect,
        label="Models",
    )
    models = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple, label="")

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["models"].choices = entitled_model_choices(tenant)

    def clean_expires_on(self) -> date | None:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day >= date.max:  # its expiry, the next midnight, is past the last date there is
            raise forms.ValidationError(
                f"The date must be {date.max - timedelta(days=1)} or earlier; leave it empty for a key that does "
                "not expire."
            )
        # An unchanged expiry is kept as it is, even if it has passed (the edit form only applies changes).
        if day is not None and "expires_on" in self.changed_data and expiry_from_date(day) <= timezone.now():
            raise forms.ValidationError("The date must be today or later.")
        return day

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("scope") == SELECTED_MODELS and not cleaned.get("models"):
            self.add_error("models", "Pick at least one model, or choose all models.")
        return cleaned

    @property
    def expires_at(self) -> datetime | None:
        return expiry_from_date(self.cleaned_data.get("expires_on"))

    @property
    def model_ids(self) -> list[str] | None:
        """``None`` = every model of the tenant (the services' convention)."""
        if self.cleaned_data.get("scope") == ALL_MODELS:
            return None
        return list(self.cleaned_data.get("models") or [])


class CreateKeyForm(KeyForm):
    name = forms.CharField(
        max_length=200, required=False, help_text="What the key is for, e.g. the application using it."
    )
    field_order = ["name", "expires_on", "scope", "models"]


class EditKeyForm(KeyForm):
    """Pre-filled from the key; the view applies only the fields that changed."""

    def __init__(self, *args: Any, key: ApiKey, **kwargs: Any) -> None:
        initial = {
            "expires_on": date_from_expiry(key.expires_at),
            "scope": ALL_MODELS if key.all_models else SELECTED_MODELS,
            "models": [m.pk for m in key.allowed_models.all()],
        }
        super().__init__(*args, tenant=key.tenant, initial=initial, **kwargs)

    @property
    def expiry_changed(self) -> bool:
        return "expires_on" in self.changed_data

    @property
    def models_changed(self) -> bool:
        return bool({"scope", "models"} & set(self.changed_data))


def grantable_roles(actor_role: Role) -> list[tuple[str, str]]:
    """Roles the actor may hand out: only owners make owners (the services refuse it otherwise too)."""
    return [(value, label) for value, label in Role.choices if ROLE_RANK[Role(value)] <= ROLE_RANK[actor_role]]


class AddMemberForm(forms.Form):
    """A tenant admin invites a username (the user joins by accepting); an operator adds an existing user at once.
    Only the operator's form says whether a username exists: a tenant admin learns nothing of other tenants."""

    username = forms.CharField(max_length=150, help_text="Their username: they join when they accept the invitation.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args: Any, tenant: Tenant, actor_role: Role, operator: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant, self.operator = tenant, operator
        self.fields["role"].choices = grantable_roles(actor_role)
        if operator:
            self.fields["username"].help_text = "An existing user account: added at once (you are an operator)."

    def clean_username(self) -> Any:
        username = self.cleaned_data["username"].strip()
        # add_member would overwrite the role of an existing member: changing roles is a separate action.
        if Membership.objects.filter(tenant=self.tenant, user__username=username).exists():
            raise forms.ValidationError("Already a member: change the role in the table instead.")
        if not self.operator:
            return username
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError("No active user with this username.")
        return user


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
