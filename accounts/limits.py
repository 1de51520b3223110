"""What a key and its tenant may spend: the limits as the gateway reads them (from the auth cache), and the
budget periods' boundaries. Stored on ``Tenant`` and ``ApiKey`` (``LimitFields``); set through
``services.set_limits``; enforced by ``hub/api/ratelimit.py``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from accounts.models import ApiKey, BudgetPeriod, Tenant

# What the columns hold (``LimitFields``, ``ApiKey.max_streams``): a larger value would fail in the database
MAX_RATE = 2**31 - 1  # rpm, tpm, max_streams: PositiveIntegerField (PostgreSQL integer)
MAX_BUDGET = 2**63 - 1  # token_budget: PositiveBigIntegerField (bigint)
COST_PLACES = Decimal("0.000001")  # cost_budget: DecimalField(max_digits=18, decimal_places=6)
MAX_COST = Decimal("999999999999.999999")
_MAXIMA = {"rpm": MAX_RATE, "tpm": MAX_RATE, "budget": MAX_BUDGET, "max_streams": MAX_RATE}


@dataclass(frozen=True)
class Limits:
    """None: unlimited. ``max_streams`` applies to keys only."""

    rpm: int | None = None
    tpm: int | None = None
    budget: int | None = None
    budget_period: str = BudgetPeriod.MONTH
    max_streams: int | None = None
    # money per budget period (HUB_CURRENCY, at the models' prices), as a decimal string: the auth cache carries it
    cost_budget: str | None = None

    def __post_init__(self) -> None:
        for name, most in _MAXIMA.items():
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
            if value is not None and value > most:
                raise ValueError(f"{name} must be at most {most:,}, got {value:,}")
        if self.budget_period not in BudgetPeriod.values:
            raise ValueError(f"budget_period must be one of {BudgetPeriod.values}, got {self.budget_period!r}")
        if self.cost_budget is not None:
            try:
                amount = Decimal(str(self.cost_budget))
            except InvalidOperation:
                amount = Decimal(-1)
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"cost_budget must be a non-negative amount or None, got {self.cost_budget!r}")
            if amount > MAX_COST or amount != amount.quantize(COST_PLACES, rounding="ROUND_DOWN"):
                raise ValueError(f"cost_budget must be at most {MAX_COST} with at most 6 decimal places, got {amount}")
            object.__setattr__(self, "cost_budget", format(amount.normalize(), "f"))  # 25.500000 and 25.5 alike

    @property
    def cost_limit(self) -> Decimal | None:
        return None if self.cost_budget is None else Decimal(self.cost_budget)

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.budget, self.max_streams, self.cost_budget))

    @classmethod
    def of(cls, owner: Tenant | ApiKey) -> Limits:
        return cls(
            rpm=owner.rpm_limit,
            tpm=owner.tpm_limit,
            budget=owner.token_budget,
            budget_period=owner.budget_period,
            max_streams=getattr(owner, "max_streams", None),
            cost_budget=None if owner.cost_budget is None else str(owner.cost_budget),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC day or calendar month holding ``now``: [start, end)."""
    now = now.astimezone(UTC)
    if period == BudgetPeriod.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start, (start + timedelta(days=32)).replace(day=1)
