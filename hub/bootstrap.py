"""First-start set-up of the embedded default: a demo tenant, an admin login, a demo key."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from accounts import services
from accounts.models import ModelKind, Role, ServedModel, Tenant

DEMO_TENANT = "demo"
ADMIN_USERNAME = "admin"

# The packaged default models, for a hub started without its inference service (with it, the
# catalog is synced from the loaded models instead). Limits are the models' own context sizes.
DEFAULT_MODELS = [
    dict(model_id="smollm2-135m-instruct", kind=ModelKind.CHAT, max_sequence_length=8192, max_output_length=4096),
    dict(model_id="gemma-3-270m", kind=ModelKind.COMPLETION, max_sequence_length=32768, max_output_length=8192),
    dict(model_id="all-minilm-l6-v2", kind=ModelKind.EMBEDDING, max_sequence_length=512, hidden_size=384),
    dict(model_id="whisper-base", kind=ModelKind.AUDIO, max_sequence_length=448, max_output_length=448),
]


@dataclass
class FirstStart:
    admin_password: str | None  # None when taken from HUB_ADMIN_PASSWORD
    api_key: str


def bootstrap(inference_url: str) -> FirstStart | None:
    """Create the demo data unless the database already has a tenant. Returns the secrets once.

    The demo tenant gets every model in the catalog (synced from the inference service when it
    runs beside the hub; else the packaged defaults are registered with their known limits)."""
    if Tenant.objects.exists():
        return None
    with transaction.atomic():
        if not ServedModel.objects.exists():
            for spec in DEFAULT_MODELS:
                services.register_model(deployment_url=inference_url, **spec)
        tenant = services.create_tenant(DEMO_TENANT, "Demo tenant")
        services.grant_models(tenant, ServedModel.objects.filter(enabled=True).values_list("id", flat=True))
        User = get_user_model()
        password = os.environ.get("HUB_ADMIN_PASSWORD") or None
        admin = User.objects.filter(username=ADMIN_USERNAME).first()
        shown_password = None
        if admin is None:
            if password is None:
                password = shown_password = secrets.token_urlsafe(12)
            admin = User.objects.create_superuser(ADMIN_USERNAME, "", password)
        services.add_member(tenant, admin, Role.OWNER)
        issued = services.issue_key(tenant, name="demo key", actor=admin)
    return FirstStart(admin_password=shown_password, api_key=issued.secret)
