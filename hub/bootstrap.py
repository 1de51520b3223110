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

# The packaged default models the inference service serves (issue 3 replaces these figures
# with the ones read from the loaded models). Limits are the models' own context sizes.
DEFAULT_MODELS = [
    dict(model_id="smollm2-135m-instruct", kind=ModelKind.CHAT, max_sequence_length=8192, max_output_length=4096),
    dict(model_id="gemma-3-270m", kind=ModelKind.COMPLETION, max_sequence_length=32768, max_output_length=8192),
    dict(model_id="all-minilm-l6-v2", kind=ModelKind.EMBEDDING, max_sequence_length=512, hidden_size=384),
]


@dataclass
class FirstStart:
    admin_password: str | None  # None when taken from HUB_ADMIN_PASSWORD
    api_key: str


def bootstrap(inference_url: str) -> FirstStart | None:
    """Create the demo data unless the database already has a tenant. Returns the secrets once."""
    if Tenant.objects.exists():
        return None
    with transaction.atomic():
        for spec in DEFAULT_MODELS:
            if not ServedModel.objects.filter(pk=spec["model_id"]).exists():
                services.register_model(deployment_url=inference_url, **spec)
        tenant = services.create_tenant(DEMO_TENANT, "Demo tenant")
        services.grant_models(tenant, [m["model_id"] for m in DEFAULT_MODELS])
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
