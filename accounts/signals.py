"""Any write that can change what a key may do invalidates the auth cache (admin edits included)."""

from django.db.models.signals import m2m_changed, post_delete, post_save

from accounts import authcache
from accounts.models import ApiKey, Deployment, ServedModel, Tenant, TenantEntitlement

_WATCHED = (Tenant, TenantEntitlement, ServedModel, ApiKey, Deployment)


def _changed(sender, **kwargs):
    authcache.bump_generation()


def connect() -> None:
    for model in _WATCHED:
        post_save.connect(_changed, sender=model, dispatch_uid=f"authcache-save-{model.__name__}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"authcache-delete-{model.__name__}")
    m2m_changed.connect(_changed, sender=ApiKey.allowed_models.through, dispatch_uid="authcache-key-models")
