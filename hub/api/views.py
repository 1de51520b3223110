"""The OpenAI-compatible read routes served by Django: the model catalog and the usage API.

Every view here derives from ``TenantAPIView``: it receives the key's tenant and entitlements
from the edge (``scope["hub"]``) and may only answer from them — tenant scoping lives in this
one base class, not in each view.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import BooleanField, Case, CharField, Count, ExpressionWrapper, Q, Sum, Value, When
from django.db.models.functions import TruncDay, TruncHour
from django.views.decorators.csrf import csrf_exempt
from django.views.defaults import page_not_found
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.authn import KeyContext
from accounts.models import ModelKind, ServedModel, UsageRecord
from hub.api import errors, usage_range
from hub.api.openapi import errors_for
from hub.api.openapi_schemas import ref
from hub.api.usage_range import Range, filter_values, range_params


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
    """OpenAI's model object, the reference's ``meta_data``, and vLLM's ``max_model_len`` where the length is known."""
    card = {
        "id": model.id,
        "object": "model",
        "created": int(model.created_at.timestamp()),
        "owned_by": model.owned_by,
        "meta_data": model.meta_data,
    }
    if model.max_sequence_length:
        card["max_model_len"] = model.max_sequence_length
    return card


class ModelListView(TenantAPIView):
    @extend_schema(
        operation_id="list_models",
        summary="List models",
        description="The models this key is entitled to, with `meta_data` (under `/vision`: vision models only).",
        tags=["models"],
        responses={200: ref("ModelList"), **errors_for(401)},
    )
    def get(self, request: Request) -> Response:
        return Response({"object": "list", "data": [model_object(m) for m in self.visible_models()]})


class ModelDetailView(TenantAPIView):
    @extend_schema(
        operation_id="retrieve_model",
        summary="Retrieve model",
        tags=["models"],
        parameters=[OpenApiParameter("model_id", str, OpenApiParameter.PATH)],
        responses={200: ref("Model"), **errors_for(401, 404)},
    )
    def get(self, request: Request, model_id: str) -> Response:
        # A NUL cannot be in any model id, and PostgreSQL refuses it in a query: not found, like any unknown id.
        model = None if "\x00" in model_id else self.visible_models().filter(id=model_id).first()
        if model is None:
            raise errors.ModelNotFound(model_id, param=None)
        return Response(model_object(model))


@csrf_exempt
def unknown_url(request, *args, **kwargs):
    return errors.error_response(errors.UnknownUrl(f"Invalid URL ({request.method} {request.path})"))


@functools.cache
def _api_heads() -> frozenset[str]:
    """The first path segments of the API's routes (Django's and the gateway's), without their base."""
    from hub.api.gateway import ROUTES  # imported here: hub.api.urls imports this module
    from hub.api.urls import api_patterns

    heads = {str(p.pattern).split("/", 1)[0] for p in api_patterns} | {r.split("/", 1)[0] for r in ROUTES}
    return frozenset(heads - {"^.*$"})


def not_found(request, exception=None):
    """The site's 404: OpenAI's error, naming the fix, for an API route asked without its base (a client whose
    ``base_url`` lacks ``/v1`` got an HTML page its SDK showed whole); the HTML page for anything else (the
    console's)."""
    if request.path.strip("/").split("/", 1)[0] in _api_heads():
        message = f"Invalid URL ({request.method} {request.path}): the API is under /v1 (a base_url ending in /v1)."
        return errors.error_response(errors.UnknownUrl(message))
    return page_not_found(request, exception)


# OpenAI's groupings too: service_tier (default, flex, batch: hub/api/tiers.py) and batch (a batch's lines or not)
# api_key_id: OpenAI's name for key (the results' field either way)
GROUP_BY = {"day": (), "model": ("model",), "key": ("api_key__prefix",), "api_key_id": ("api_key__prefix",),
            "service_tier": ("service_tier",), "batch": ("batch",)}  # fmt: skip
# which of OpenAI's usage results a route's rows are: encoders' (embeddings, rerank and score, a vector store's
# indexing and searches) embeddings, speech's audio_transcriptions and audio_speeches, moderations, the rest completions
EMBEDDING_ROUTES = ("embeddings", "rerank", "score", "vector_stores/files", "vector_stores/search")
_KIND = Case(
    When(route="audio/speech", then=Value("audio_speeches")),
    When(route__startswith="audio/", then=Value("audio_transcriptions")),
    When(route__in=EMBEDDING_ROUTES, then=Value("embeddings")),
    When(route="moderations", then=Value("moderations")),
    default=Value("completions"),
    output_field=CharField(),
)
_BATCH = ExpressionWrapper(Q(service_tier="batch"), output_field=BooleanField())


USAGE_FILTERS = {  # OpenAI's names
    "models": "Only these models' usage (may be given more than once).",
    "api_key_ids": "Only these keys' usage, by the id the results name them with (may be given more than once).",
}


class UsageView(TenantAPIView):
    """``GET /v1/usage?start=YYYY-MM-DD&end=YYYY-MM-DD&group_by=day|model|key|service_tier|batch`` (``api_key_id``:
    OpenAI's name for ``key``; ``group_by`` repeated: split by each, as OpenAI's array): this tenant's metered
    requests and tokens in daily buckets (UTC; ``end`` inclusive; default the last 7 days; or hourly with
    ``bucket_width=1h``), shaped like OpenAI's
    organization usage API: completions results (chat, completions, responses), embeddings results (and the encoders'
    and vector stores' rows), moderations results, audio_transcriptions results (with the audio's ``seconds``) for
    transcriptions and translations, and audio_speeches results (with their ``characters``). Read from the raw usage
    rows, so it is exact and current."""

    @extend_schema(
        operation_id="get_usage",
        summary="Usage of this tenant",
        description="Metered requests and tokens of the key's tenant in daily UTC buckets, shaped like "
        "OpenAI's organization usage API.",
        tags=["usage"],
        parameters=[
            *usage_range.parameters(GROUP_BY, "Split each day's results."),
            *(
                OpenApiParameter(name, {"type": "array", "items": {"type": "string"}}, description=text)
                for name, text in USAGE_FILTERS.items()
            ),
        ],
        responses={200: ref("UsagePage"), **errors_for(400, 401)},
    )
    def get(self, request: Request) -> Response:
        asked = range_params(request, GROUP_BY, tuple(USAGE_FILTERS))
        fields = asked.fields
        only = {}  # OpenAI's filters: each may be given more than once
        if models := filter_values(request, "models"):
            only["model__in"] = models
        if keys := filter_values(request, "api_key_ids"):
            only["api_key__prefix__in"] = keys
        rows = (
            UsageRecord.objects.filter(
                tenant_id=self.key.tenant_id, created_at__gte=asked.start, created_at__lt=asked.end, **only
            )
            .annotate(day=_bucket(asked), kind=_KIND, batch=_BATCH)
            .values("day", "kind", *fields)
            .annotate(
                requests=Count("id"),
                prompt=Sum("prompt_tokens"),
                completion=Sum("completion_tokens"),
                total=Sum("total_tokens"),
                seconds=Sum("audio_seconds"),
                cached=Sum("cached_tokens"),
            )
            .order_by("day", "kind", *fields)
        )
        by_bucket: dict[datetime, list[dict]] = {}
        for row in rows:
            result = {
                "object": f"organization.usage.{row['kind']}.result",
                "input_tokens": row["prompt"] or 0,
                "input_cached_tokens": row["cached"] or 0,
                "output_tokens": row["completion"] or 0,
                "total_tokens": row["total"] or 0,
                "num_model_requests": row["requests"],
                "model": row.get("model"),
                "api_key_id": row.get("api_key__prefix"),
                "service_tier": row.get("service_tier"),
                "batch": row.get("batch"),
            }  # fmt: skip
            if row["kind"] == "audio_transcriptions":  # as OpenAI's: the seconds (and the tokens they count as)
                result["seconds"] = round(row["seconds"], 3)
            elif row["kind"] == "audio_speeches":  # as OpenAI's: the characters spoken
                result["characters"] = row["prompt"] or 0
            by_bucket.setdefault(row["day"], []).append(result)
        return Response(_page(asked, by_bucket))


def _bucket(asked: Range):
    """A usage row's bucket: its UTC day's or hour's start."""
    return (TruncHour if asked.hourly else TruncDay)("created_at", tzinfo=UTC)


def _page(asked: Range, by_bucket: dict[datetime, list[dict]]) -> dict:
    """OpenAI's page of buckets (every one of the page, empty ones too)."""
    buckets = [{
        "object": "bucket",
        "start_time": int(begin.timestamp()),
        "end_time": int((begin + asked.width).timestamp()),
        "results": by_bucket.get(begin, []),
    } for begin in asked.buckets()]  # fmt: skip
    return {"object": "page", "data": buckets, "has_more": asked.next_page is not None, "next_page": asked.cursor()}


COST_GROUPS = {"day": (), "line_item": ("model",)}


class CostsView(TenantAPIView):
    """``GET /v1/costs?start=YYYY-MM-DD&end=YYYY-MM-DD&group_by=day|line_item``: this tenant's costs in daily UTC
    buckets, shaped like OpenAI's ``/organization/costs`` (a line item is a model). Each request was charged when
    it was metered, at the price in force then (``accounts.pricing``); the sums are exact decimals."""

    @extend_schema(
        operation_id="get_costs",
        summary="Costs of this tenant",
        description="The cost of the key's tenant's metered requests in daily UTC buckets, shaped like OpenAI's "
        "organization costs API.",
        tags=["usage"],
        parameters=usage_range.parameters(COST_GROUPS, "Split each day by model."),
        responses={200: ref("CostsPage"), **errors_for(400, 401)},
    )
    def get(self, request: Request) -> Response:
        asked = range_params(request, COST_GROUPS)
        fields = asked.fields
        rows = (
            UsageRecord.objects.filter(
                tenant_id=self.key.tenant_id, created_at__gte=asked.start, created_at__lt=asked.end
            )
            .annotate(day=_bucket(asked))
            .values("day", *fields)
            .annotate(cost=Sum("cost"))
            .order_by("day", *fields)
        )
        by_bucket: dict[datetime, list[dict]] = {}
        for row in rows:
            by_bucket.setdefault(row["day"], []).append({
                "object": "organization.costs.result",
                "amount": {"value": row["cost"] or Decimal(0), "currency": settings.HUB_CURRENCY},
                "line_item": row.get("model"),
                "project_id": None,
            })  # fmt: skip
        return Response(_page(asked, by_bucket))
