"""The OpenAI-compatible read routes served by Django: the model catalog.

Every view here derives from ``TenantAPIView``: it receives the key's tenant and entitlements
from the edge (``scope["hub"]``) and may only answer from them — tenant scoping lives in this
one base class, not in each view.
"""

from __future__ import annotations

from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authn import KeyContext
from accounts.models import ModelKind, ServedModel
from hub.api import errors


class EdgeKeyAuthentication(BaseAuthentication):
    """The edge middleware already verified the key; DRF just picks it up."""

    def authenticate(self, request: Request):
        ctx = getattr(request._request, "scope", {}).get("hub")
        if ctx is None or ctx.key is None:
            raise errors.AuthenticationError("You didn't provide an API key.", code="missing_api_key")
        return (None, ctx.key)


class TenantAPIView(APIView):
    authentication_classes = [EdgeKeyAuthentication]

    @property
    def key(self) -> KeyContext:
        return self.request.auth

    @property
    def base(self) -> str:
        return self.request._request.scope["hub"].base

    def visible_models(self):
        """The catalog as this key sees it: entitled, enabled, and vision-only under /vision."""
        qs = ServedModel.objects.filter(id__in=self.key.model_ids, enabled=True)
        if self.base == "vision":
            qs = qs.filter(kind=ModelKind.VISION)
        return qs


def model_object(model: ServedModel) -> dict:
    return {
        "id": model.id,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.owned_by,
        "meta_data": model.meta_data,
    }


class ModelListView(TenantAPIView):
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": [model_object(m) for m in self.visible_models()]})


class ModelDetailView(TenantAPIView):
    def get(self, request: Request, model_id: str) -> Response:
        model = self.visible_models().filter(id=model_id).first()
        if model is None:
            raise errors.ModelNotFound(model_id, param=None)
        return Response(model_object(model))


@csrf_exempt
def unknown_url(request, *args, **kwargs):
    return errors.error_response(errors.UnknownUrl(f"Invalid URL ({request.method} {request.path})"))
