"""Tenants, their members, API keys, the served-model catalog, entitlements and usage.

Writes go through ``accounts.services``; these classes hold data and read-only helpers.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from accounts.json_nul import NulSafeDecoder, NulSafeEncoder

slug_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{0,62}$", "lowercase letters, digits and dashes; 1-63 characters")
model_id_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", "letters, digits and . _ : / -; 1-128 characters"
)


class BudgetPeriod(models.TextChoices):
    DAY = "day", "per day"
    MONTH = "month", "per month"


class LimitFields(models.Model):
    """Rate limits and a token budget (null: unlimited), on a tenant and on each of its keys; both apply.

    Enforced by the gateway (``hub/api/ratelimit.py``): requests and tokens per minute as token buckets, the
    budget as tokens per UTC day or calendar month, reserved at the worst case and settled to the count.
    """

    rpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="requests per minute; empty = no limit")
    tpm_limit = models.PositiveIntegerField(null=True, blank=True, help_text="tokens per minute; empty = no limit")
    token_budget = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="tokens (prompt + completion) per budget period; empty = no budget"
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    cost_budget = models.DecimalField(
        max_digits=18, decimal_places=6, null=True, blank=True,
        help_text="money (HUB_CURRENCY) per budget period, at the models' prices; empty = no money budget",
    )  # fmt: skip

    class Meta:
        abstract = True


class Tenant(LimitFields):
    slug = models.SlugField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    entitled_models = models.ManyToManyField(
        "ServedModel", through="TenantEntitlement", related_name="tenants", blank=True
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


# Higher rank may do everything a lower rank may.
ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_user_tenant_unique")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class InvitationQuerySet(models.QuerySet):
    def pending(self, now=None):
        now = now or timezone.now()
        return self.filter(accepted_at__isnull=True, declined_at__isnull=True, expires_at__gt=now)


class Invitation(models.Model):
    """A tenant admin's offer of membership to a username: the user joins only by accepting it (signed in as
    that username). The admin learns nothing about which usernames exist: every invitation reads the same."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    username = models.CharField(max_length=150)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    declined_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["username"], name="invitation_username_idx")]

    def __str__(self) -> str:
        return f"{self.username} → {self.tenant} ({self.role})"


class ModelKind(models.TextChoices):
    CHAT = "chat", "Chat"
    COMPLETION = "completion", "Completion"
    EMBEDDING = "embedding", "Embedding"
    RERANK = "rerank", "Rerank"  # a cross-encoder: /rerank and /score
    VISION = "vision", "Vision"
    AUDIO = "audio", "Audio"
    MODERATION = "moderation", "Moderation"  # a guard model (Llama Guard): /moderations, also chat
    TTS = "tts", "Text to speech"  # a VITS voice: /audio/speech


class ServedModel(models.Model):
    """A model id clients may name, with the limits the reference exposes as ``meta_data``."""

    id = models.CharField(primary_key=True, max_length=128, validators=[model_id_validator])
    kind = models.CharField(max_length=16, choices=ModelKind.choices)
    max_sequence_length = models.PositiveIntegerField(default=0, help_text="prompt + output tokens; 0 = unknown")
    hidden_size = models.PositiveIntegerField(default=0, help_text="embedding dimensions; 0 for generative models")
    max_output_length = models.PositiveIntegerField(default=0, help_text="max generated tokens; 0 = no own limit")
    owned_by = models.CharField(max_length=100, default="llm-hub")
    enabled = models.BooleanField(default=True)
    unserved_since = models.DateTimeField(
        null=True, blank=True,
        help_text="set when the last service serving it stopped (the sync disabled it); cleared when one serves "
        "it again",
    )  # fmt: skip
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.id

    @property
    def meta_data(self) -> dict[str, int]:
        return {
            "max_sequence_length": self.max_sequence_length,
            "hidden_size": self.hidden_size,
            "max_output_length": self.max_output_length,
        }


class ModelPrice(models.Model):
    """What a model costs from ``effective_from`` on, until the next price of the same model: a history, so that a
    change applies from its date and never rewrites the cost of earlier usage. Per million tokens (cached prompt
    tokens at their own price; empty: the input price) and per minute of audio (speech models)."""

    model = models.ForeignKey(ServedModel, on_delete=models.CASCADE, related_name="prices")
    effective_from = models.DateTimeField(default=timezone.now)
    input_per_million = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    cached_input_per_million = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="empty: the input price"
    )
    output_per_million = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    per_audio_minute = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal(0))
    # flex and batch requests run behind the others (hub/api/tiers.py) and pay this share of the price (OpenAI: half)
    flex_share = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0.5"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(1))],
        help_text="the share of the price flex and batch requests pay",
    )  # fmt: skip
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [models.UniqueConstraint(fields=["model", "effective_from"], name="one_price_per_moment")]

    def __str__(self) -> str:
        return f"{self.model_id} from {self.effective_from:%Y-%m-%d %H:%M}"


class Deployment(models.Model):
    """Where a model is served: one of our inference services or an external OpenAI-compatible API."""

    model = models.ForeignKey(ServedModel, on_delete=models.CASCADE, related_name="deployments")
    base_url = models.URLField(max_length=500, help_text="OpenAI-compatible base URL, e.g. http://10.0.0.5:8100/v1")
    upstream_model = models.CharField(max_length=200, blank=True, help_text="model name upstream; blank = same id")
    api_key = models.CharField(max_length=500, blank=True, help_text="bearer key for an external upstream")
    external = models.BooleanField(
        default=False,
        help_text="an external OpenAI-compatible API rather than our inference service: it is not asked for "
        "running usage in every stream chunk, only for the final usage chunk",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "base_url"], name="deployment_model_url_unique")]

    def __str__(self) -> str:
        return f"{self.model_id} @ {self.base_url}"


class FallbackOn(models.TextChoices):
    """When a fallback takes a model's request (LiteLLM's router ``fallbacks`` are ``any``, its
    ``context_window_fallbacks`` ``context``)."""

    ANY = "any", "whenever the model cannot answer"
    UNAVAILABLE = "unavailable", "only when no deployment takes the request (unreachable, busy)"
    CONTEXT = "context", "only when the request is over the model's context or output length"


class ModelFallback(models.Model):
    """Where a model's requests go when it cannot answer them (LiteLLM's router ``fallbacks`` and
    ``context_window_fallbacks``): none of its deployments reachable or free (refused, 503, 429), or the request over
    its context or output length, as ``on`` says. Tried in ``position`` order, each only where the key may use it
    (``hub/api/fallbacks.py``)."""

    model = models.ForeignKey(ServedModel, on_delete=models.CASCADE, related_name="fallback_links")
    fallback = models.ForeignKey(ServedModel, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)
    on = models.CharField(max_length=16, choices=FallbackOn.choices, default=FallbackOn.ANY)

    class Meta:
        ordering = ["model", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "fallback"], name="fallback_once_per_model"),
            models.CheckConstraint(condition=~Q(fallback=models.F("model")), name="fallback_not_itself"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} -> {self.fallback_id}" + (f" ({self.on})" if self.on != FallbackOn.ANY else "")

    @staticmethod
    def takes(on: str, reason: str) -> bool:
        """Whether a fallback set ``on`` takes a request its model could not answer for ``reason`` (``unavailable``,
        ``busy`` or ``context``: the gateway's, and its metric's label)."""
        return on == FallbackOn.ANY or on == (FallbackOn.CONTEXT if reason == "context" else FallbackOn.UNAVAILABLE)

    @staticmethod
    def mismatch(model, fallback) -> str | None:
        """Why ``fallback`` cannot answer ``model``'s requests, or None. Both have ``id``, ``kind`` and
        ``hidden_size`` (a ``ServedModel``, or the gateway's ``ModelInfo``): the request goes on as it was sent, so
        the fallback must be another model of the same kind, and an embedding model's must give vectors of the same
        length. The one check of the service, the admin's form and the gateway."""
        if fallback.id == model.id:
            return f"'{model.id}' cannot be its own fallback"
        if fallback.kind != model.kind:
            return (f"'{fallback.id}' is a {fallback.kind} model and '{model.id}' a {model.kind} model: a fallback "
                    "must be of the model's kind")  # fmt: skip
        if model.kind == ModelKind.EMBEDDING and fallback.hidden_size != model.hidden_size:
            return (f"'{fallback.id}' gives {fallback.hidden_size} dimensions and '{model.id}' {model.hidden_size}: "
                    "an embedding model's fallback must give as many")  # fmt: skip
        return None


class TenantEntitlement(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="entitlements")
    model = models.ForeignKey(ServedModel, on_delete=models.CASCADE, related_name="entitlements")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "model"], name="entitlement_tenant_model_unique")]


class ApiKeyQuerySet(models.QuerySet):
    def usable(self, now=None):
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ApiKey(LimitFields):
    """A tenant's credential. Only a SHA-256 of the secret is stored; ``prefix`` is the visible part.

    After a rotation the previous secret stays valid until ``previous_valid_until``.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True)
    prefix = models.CharField(max_length=32, unique=True)
    secret_hash = models.CharField(max_length=64)
    previous_prefix = models.CharField(max_length=32, unique=True, null=True, blank=True)
    previous_secret_hash = models.CharField(max_length=64, blank=True)
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    # True: every model of the tenant, including ones granted later; else only ``allowed_models``.
    all_models = models.BooleanField(default=False)
    allowed_models = models.ManyToManyField(ServedModel, blank=True, related_name="api_keys")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    max_streams = models.PositiveIntegerField(
        null=True, blank=True, help_text="streams open at once through this key; empty = no limit"
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name or 'unnamed'})"

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class UsageRecord(models.Model):
    """One row per request that reached a model: the source of truth for metering."""

    request_id = models.CharField(max_length=64, db_index=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="usage_records")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="usage_records")
    model = models.CharField(max_length=128)
    route = models.CharField(max_length=64)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    # Speech routes: the audio's duration (the decoder's tokens are completion_tokens, the audio's prompt_tokens).
    audio_seconds = models.FloatField(default=0.0)
    cached_tokens = models.PositiveIntegerField(default=0, help_text="of prompt_tokens, found in a prefix cache")
    # default, flex or batch (hub/api/tiers.py): how soon it ran, and which share of the price it pays
    service_tier = models.CharField(max_length=16, default="default")
    # at the model's price when the row was written (accounts/pricing.py); exact, never a float
    cost = models.DecimalField(max_digits=24, decimal_places=10, default=Decimal(0))
    status_code = models.PositiveSmallIntegerField(validators=[MinValueValidator(100)])
    streamed = models.BooleanField(default=False)
    aborted = models.BooleanField(default=False)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # written by the reaper (accounts/open_requests.py) for a request whose hub process died before metering it:
    # its counts are the deployment's tally, or zero where no deployment remembered it
    recovered = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"], name="usage_tenant_time")]


class OpenRequest(models.Model):
    """A request on its way to a model, written before it is sent and deleted with its usage row (in one
    transaction). A row whose hub process stopped renewing its lease (killed, its node lost) was never metered:
    the reaper meters it from what the deployments counted (``accounts/open_requests.py``)."""

    usage_id = models.CharField(max_length=32, primary_key=True)  # sent upstream as x-usage-id
    request_id = models.CharField(max_length=64)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=128)
    route = models.CharField(max_length=64)
    service_tier = models.CharField(max_length=16, default="default")
    streamed = models.BooleanField(default=False)
    owner = models.CharField(max_length=32, db_index=True)  # the hub process that sent it (open_requests.OWNER)
    started_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(db_index=True)  # renewed by its owner while it lives
    grant = models.JSONField(null=True, blank=True)  # its rate-limit reservation, settled when reaped
    # set when reaped: the usage row written for it (a late row from its own process then replaces the counts)
    record = models.OneToOneField(UsageRecord, null=True, blank=True, on_delete=models.CASCADE, related_name="+")


class RollupPeriod(models.TextChoices):
    HOUR = "hour", "hour"
    DAY = "day", "day"


class UsageRollup(models.Model):
    """Usage summed per period (hour or day, UTC) and tenant / key / model, for charts and reports.

    Derived data: ``accounts.tasks.rollup_usage`` rebuilds buckets from the ``UsageRecord`` rows, which
    stay the source of truth (``manage.py rebuild_rollups`` rebuilds them all).
    """

    period = models.CharField(max_length=8, choices=RollupPeriod.choices)
    bucket_start = models.DateTimeField()
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_rollups")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="usage_rollups")
    model = models.CharField(max_length=128)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    aborted = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    audio_seconds = models.FloatField(default=0.0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=28, decimal_places=10, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["period", "bucket_start", "tenant", "api_key", "model"], name="rollup_bucket_unique"
            )
        ]
        indexes = [models.Index(fields=["tenant", "period", "bucket_start"], name="rollup_tenant_period")]


class RollupWatermark(models.Model):
    """How far the roll-ups reach: every raw row before ``until`` is in them, none after.

    One row. Dashboards add the raw rows from ``until`` on (minutes of them) to the roll-ups, so they are
    current without reading the raw table's history (``accounts.usage``).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    until = models.DateTimeField()


class UsageReport(models.Model):
    """A tenant's usage for one calendar month (UTC): the CSV and a chart, built by ``accounts.tasks``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_reports")
    month = models.DateField(help_text="the month's first day")
    csv = models.BinaryField()
    chart_png = models.BinaryField()
    requests = models.PositiveBigIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    audio_seconds = models.FloatField(default=0.0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=28, decimal_places=10, default=Decimal(0))
    built_at = models.DateTimeField(default=timezone.now)
    built_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-month", "tenant__slug"]
        constraints = [models.UniqueConstraint(fields=["tenant", "month"], name="report_tenant_month_unique")]

    def __str__(self) -> str:
        return f"{self.tenant} {self.month:%Y-%m}"


class StoredResponse(models.Model):
    """A Responses API answer kept for ``GET /v1/responses/{id}`` and ``previous_response_id`` (``store``, the
    default): the whole context it answered, so a conversation continues from it whatever became of the turns
    before (deleted, expired). Kept ``HUB_RESPONSES_RETENTION_DAYS`` days (``accounts.expire_responses``)."""

    id = models.CharField(max_length=64, primary_key=True)  # resp_<48 hex>
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="stored_responses")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=200)
    created_at = models.DateTimeField(db_index=True)
    # the items of the turns before this one (inputs and outputs); NUL-safe: PostgreSQL's jsonb refuses U+0000
    history = models.JSONField(default=list, encoder=NulSafeEncoder, decoder=NulSafeDecoder)
    # this request's own input items, with their ids
    input_items = models.JSONField(default=list, encoder=NulSafeEncoder, decoder=NulSafeDecoder)
    response = models.JSONField(encoder=NulSafeEncoder, decoder=NulSafeDecoder)  # as the client got it
    # file_search_call item id -> its results, for the searches whose results the client did not ask to see (OpenAI's
    # ``include``): a response continuing this one still reads them
    search_results = models.JSONField(default=dict, encoder=NulSafeEncoder, decoder=NulSafeDecoder)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def output_with_results(self) -> list[dict]:
        """Its output, with the results of its searches, shown or not."""
        return [
            {**item, "results": self.search_results[item["id"]]}
            if item.get("type") == "file_search_call" and item.get("results") is None and item.get("id")
            in self.search_results else item
            for item in self.response.get("output", [])
        ]  # fmt: skip

    def context(self) -> list[dict]:
        """The items a response continuing this one starts from: everything before, this input, this output (its
        searches with their results, shown or not)."""
        return [*self.history, *self.input_items, *self.output_with_results()]


class StoredResponseItem(models.Model):
    """The id of an item of a stored response (one of its input items or an output item) -> that response: how an
    ``item_reference`` names an item of an earlier response without ``previous_response_id`` (a client that sends
    the whole conversation each turn, as OpenAI's Codex CLI does, references the items the hub made by id)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    item_id = models.CharField(max_length=200)
    response = models.ForeignKey(StoredResponse, on_delete=models.CASCADE, related_name="items")

    class Meta:
        indexes = [models.Index(fields=["tenant", "item_id"])]


class BackgroundState(models.TextChoices):
    QUEUED = "queued", "queued"
    IN_PROGRESS = "in_progress", "in progress"
    DONE = "done", "done"  # the run ended: the stored response holds its answer (completed, incomplete or failed)
    CANCELLED = "cancelled", "cancelled"


class BackgroundResponse(models.Model):
    """The work of a response created with ``background: true``: its stored response (``queued`` at first) is
    answered later by a runner (``hub/background/``), which claims it, shows life on ``heartbeat_at`` and writes
    the answer into the stored response; a runner that goes quiet (its process died) hands it to the next one.
    Deleted with its stored response."""

    response = models.OneToOneField(StoredResponse, primary_key=True, on_delete=models.CASCADE,
                                    related_name="background")  # fmt: skip
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    request = models.JSONField(encoder=NulSafeEncoder, decoder=NulSafeDecoder)  # the request's body, as sent
    state = models.CharField(max_length=16, choices=BackgroundState.choices, default=BackgroundState.QUEUED)
    runner = models.CharField(max_length=64, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)  # runs started: a run lost with its process counts

    UNFINISHED = (BackgroundState.QUEUED, BackgroundState.IN_PROGRESS)

    class Meta:
        indexes = [models.Index(fields=["state", "heartbeat_at"])]


class BackgroundEvents(models.Model):
    """Stream events of a background response created with ``stream: true``, in the order its run sent them (a few
    per row: each row is one write of the runner's), for the client that streams it and any that streams it again
    (``GET /v1/responses/{id}?stream=true&starting_after=N``). Deleted with the response."""

    response = models.ForeignKey(BackgroundResponse, on_delete=models.CASCADE, related_name="events")
    first = models.PositiveIntegerField()  # the sequence numbers of its first and last events
    last = models.PositiveIntegerField()
    events = models.JSONField(encoder=NulSafeEncoder, decoder=NulSafeDecoder)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["response", "first"], name="background_events_once")]
        indexes = [models.Index(fields=["response", "last"])]


class StoredChatCompletion(models.Model):
    """A chat completion kept for OpenAI's stored chat completions routes (``store: true`` on the request; OpenAI's
    default is not to store): the request's messages and the answer as the client got it, with its ``metadata``
    (the one thing that may change afterwards). Kept ``HUB_CHAT_COMPLETIONS_RETENTION_DAYS`` days
    (``accounts.expire_chat_completions``)."""

    id = models.CharField(max_length=64, primary_key=True)  # chatcmpl-<32 hex>, given by the hub
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="stored_chat_completions")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=200)
    # when it was stored (microseconds): the list's order, with the id to break ties
    created_at = models.DateTimeField()
    # plain JSON: the list filters on its keys in SQL, and the gateway refuses a NUL in it
    metadata = models.JSONField(default=dict)
    messages = models.JSONField(default=list, encoder=NulSafeEncoder, decoder=NulSafeDecoder)
    completion = models.JSONField(encoder=NulSafeEncoder, decoder=NulSafeDecoder)  # as the client got it

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at", "id"]), models.Index(fields=["created_at"])]

    def answer(self) -> dict:
        """The chat completion object the routes return: the answer, with its current metadata."""
        return {**self.completion, "metadata": self.metadata}


class Conversation(models.Model):
    """OpenAI's Conversations API: a tenant's list of Responses API items (``ConversationItem``), which a response
    created with ``conversation`` continues and extends. Kept until deleted, as OpenAI keeps them."""

    id = models.CharField(max_length=64, primary_key=True)  # conv_<48 hex>
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="conversations")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    metadata = models.JSONField(default=dict, encoder=NulSafeEncoder, decoder=NulSafeDecoder)

    def resource(self) -> dict:
        """OpenAI's conversation object."""
        return {"id": self.pk, "object": "conversation", "created_at": int(self.created_at.timestamp()),
                "metadata": self.metadata}  # fmt: skip


class ConversationItem(models.Model):
    """One item of a conversation, in the order added (the primary key); ``item_id`` is the item's own id."""

    id = models.BigAutoField(primary_key=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="items")
    item_id = models.CharField(max_length=200)
    item = models.JSONField(encoder=NulSafeEncoder, decoder=NulSafeDecoder)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "item_id"], name="conversation_item_unique")]


class StoredFile(models.Model):
    """OpenAI's Files API: a tenant's uploaded file (``purpose`` ``batch`` for the Batch API's input) or a batch's
    output (``batch_output``). The bytes live in the database, so every hub replica serves them."""

    id = models.CharField(max_length=64, primary_key=True)  # file-<24 hex>
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="files")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    purpose = models.CharField(max_length=32)
    filename = models.CharField(max_length=512)
    bytes = models.BigIntegerField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)  # deleted by accounts.expire_files after it
    content = models.BinaryField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at", "id"]), models.Index(fields=["expires_at"])]

    def resource(self) -> dict:
        """OpenAI's file object."""
        found = {"id": self.pk, "object": "file", "bytes": self.bytes, "created_at": int(self.created_at.timestamp()),
                 "filename": self.filename, "purpose": self.purpose, "status": "processed"}  # fmt: skip
        if self.expires_at is not None:  # OpenAI's schema has no null here: a file kept until deleted has none
            found["expires_at"] = int(self.expires_at.timestamp())
        return found


class UploadStatus(models.TextChoices):
    PENDING = "pending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Upload(models.Model):
    """OpenAI's Uploads API: a file sent in parts (``UploadPart``), which becomes a ``StoredFile`` when completed.
    Parts may be added for an hour; then a pending upload is expired and its parts deleted (``accounts.uploads``)."""

    id = models.CharField(max_length=64, primary_key=True)  # upload_<24 hex>
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="uploads")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    filename = models.CharField(max_length=512)
    purpose = models.CharField(max_length=32)
    mime_type = models.CharField(max_length=255)
    bytes = models.BigIntegerField()  # what the client said it will send; completing checks it
    status = models.CharField(max_length=16, choices=UploadStatus.choices, default=UploadStatus.PENDING)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    file_expires_seconds = models.IntegerField(null=True, blank=True)  # the resulting file's expires_after
    file = models.ForeignKey(StoredFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        indexes = [models.Index(fields=["status", "expires_at"])]


class UploadPart(models.Model):
    id = models.CharField(max_length=64, primary_key=True)  # part_<24 hex>
    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="parts")
    created_at = models.DateTimeField()
    bytes = models.BigIntegerField()
    content = models.BinaryField()


class BatchStatus(models.TextChoices):
    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


class Batch(models.Model):
    """OpenAI's Batch API: the requests of a ``batch`` file, run in the background through the gateway with the key
    that created the batch (``hub/batches/``), their answers gathered into output files. ``runner`` and
    ``heartbeat_at`` say who runs it and when that runner last showed life: a batch whose runner went quiet
    (a restarted worker) is taken up again by another, which skips the lines already answered."""

    UNFINISHED = (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING, BatchStatus.CANCELLING)

    id = models.CharField(max_length=64, primary_key=True)  # batch_<24 hex>
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="batches")
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    endpoint = models.CharField(max_length=64)
    input_file_id = models.CharField(max_length=64)  # the id, kept after the file is deleted
    completion_window = models.CharField(max_length=8, default="24h")
    status = models.CharField(max_length=16, choices=BatchStatus.choices, default=BatchStatus.VALIDATING)
    model = models.CharField(max_length=200, blank=True)
    errors = models.JSONField(null=True, blank=True)  # OpenAI's BatchError objects, when validation failed
    output_file_id = models.CharField(max_length=64, blank=True)
    error_file_id = models.CharField(max_length=64, blank=True)
    output_expires_seconds = models.IntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, encoder=NulSafeEncoder, decoder=NulSafeDecoder)
    total = models.IntegerField(default=0)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    in_progress_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    runner = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at", "id"]), models.Index(fields=["status"])]


class BatchResult(models.Model):
    """One answered line of a batch: the output line as it goes into the output file (``ok``) or the error file."""

    id = models.BigAutoField(primary_key=True)
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="results")
    line = models.IntegerField()  # 1-based, in the input file
    ok = models.BooleanField()
    output = models.JSONField(encoder=NulSafeEncoder, decoder=NulSafeDecoder)
    input_tokens = models.IntegerField(default=0)
    cached_tokens = models.IntegerField(default=0)
    output_tokens = models.IntegerField(default=0)
    reasoning_tokens = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "line"], name="batch_result_line_unique")]


class VectorStore(models.Model):
    """OpenAI's vector stores: files (``VectorStoreFile``) cut into chunks, each embedded by ``embedding_model`` (a
    catalog embedding model, through the gateway with the key that added the file: limited and metered), searched by
    a query's embedding (``hub/vector_stores/``). Expires ``expires_after_days`` after it was last active."""

    id = models.CharField(max_length=64, primary_key=True)  # vs_<24 hex>
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="vector_stores")
    name = models.CharField(max_length=256, blank=True, default="")
    embedding_model = models.CharField(max_length=128)
    created_at = models.DateTimeField()
    last_active_at = models.DateTimeField()
    expires_after_days = models.IntegerField(null=True, blank=True)  # anchor: last_active_at
    expires_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, encoder=NulSafeEncoder, decoder=NulSafeDecoder)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at", "id"]), models.Index(fields=["expires_at"])]


class VectorStoreFileBatch(models.Model):
    id = models.CharField(max_length=64, primary_key=True)  # vsfb_<24 hex>
    vector_store = models.ForeignKey(VectorStore, on_delete=models.CASCADE, related_name="file_batches")
    created_at = models.DateTimeField()
    cancelled = models.BooleanField(default=False)


class VectorStoreFileStatus(models.TextChoices):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class VectorStoreFile(models.Model):
    """A file of the Files API in a vector store (its id is the file's), indexed in the background: ``claimed_at``
    is when an indexer last showed life on it; one that went quiet is taken up again (``accounts.vector_stores``)."""

    id = models.BigAutoField(primary_key=True)
    vector_store = models.ForeignKey(VectorStore, on_delete=models.CASCADE, related_name="files")
    file_id = models.CharField(max_length=64)
    api_key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="+")
    batch = models.ForeignKey(VectorStoreFileBatch, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="files")  # fmt: skip
    created_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=VectorStoreFileStatus.choices,
                              default=VectorStoreFileStatus.IN_PROGRESS)  # fmt: skip
    last_error = models.JSONField(null=True, blank=True)
    usage_bytes = models.BigIntegerField(default=0)  # its chunks' text and vectors
    max_chunk_size_tokens = models.IntegerField()
    chunk_overlap_tokens = models.IntegerField()
    attributes = models.JSONField(default=dict, encoder=NulSafeEncoder, decoder=NulSafeDecoder)
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["vector_store", "file_id"], name="vector_store_file_unique")]
        indexes = [models.Index(fields=["vector_store", "created_at", "id"]), models.Index(fields=["status"])]


class VectorStoreChunk(models.Model):
    """One chunk of an indexed file: its text and its embedding (float32, unit length, little-endian)."""

    id = models.BigAutoField(primary_key=True)
    file = models.ForeignKey(VectorStoreFile, on_delete=models.CASCADE, related_name="chunks")
    vector_store = models.ForeignKey(VectorStore, on_delete=models.CASCADE, related_name="+")
    position = models.IntegerField()
    text = models.TextField()
    embedding = models.BinaryField()

    class Meta:
        indexes = [models.Index(fields=["vector_store"])]


class WebhookEndpoint(models.Model):
    """A tenant's webhook endpoint (OpenAI's ``/v1/webhook_endpoints``): the URL the hub POSTs the chosen events to,
    each signed with its secret (Standard Webhooks, as OpenAI's: ``client.webhooks.unwrap`` verifies them). After a
    rotation that keeps the old secret, both sign until ``previous_secret_until``."""

    id = models.CharField(max_length=64, primary_key=True)  # wh_<24 hex>
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=2048)
    event_types = models.JSONField(default=list)
    # the signing secret (whsec_<base64 of 32 bytes>), sealed (accounts/sealed.py): the hub signs with it
    secret = models.CharField(max_length=512)
    previous_secret = models.CharField(max_length=512, blank=True, default="")
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at", "id"])]


class DeliveryState(models.TextChoices):
    PENDING = "pending", "pending"
    DELIVERED = "delivered", "delivered"
    FAILED = "failed", "failed"  # refused or unanswered for HUB_WEBHOOK_RETRY_HOURS


class WebhookDelivery(models.Model):
    """One event to send to one endpoint, written in the transaction of the change it tells (a batch or background
    response that ended), so that none is lost; sent at once, then retried with growing waits until the endpoint
    answers 2xx or ``HUB_WEBHOOK_RETRY_HOURS`` have passed. ``id`` is the ``webhook-id`` header (the same on every
    attempt: receivers drop repeats by it); ``payload`` the body, whose ``id`` is the event's (the same for every
    endpoint it goes to)."""

    id = models.CharField(max_length=64, primary_key=True)  # msg_<24 hex>
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # when the next attempt is due; while one is under way, when its lease ends (a sender that died)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status = models.PositiveIntegerField(null=True, blank=True)  # the endpoint's last HTTP status
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "next_attempt_at"]), models.Index(fields=["endpoint", "created_at"])]
