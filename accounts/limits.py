"""What a key and its tenant may spend: the limits as the gateway reads them (from the auth cache), and the
budget periods' boundaries. Stored on ``Tenant`` and ``ApiKey`` (``LimitFields``); set through
``services.set_limits``; enforced by ``hub/api/ratelimit.py``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from accounts.models import ApiKey, BudgetPeriod, Tenant


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
        for name in ("rpm", "tpm", "budget", "max_streams"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
        if self.budget_period not in BudgetPeriod.values:
            raise ValueError(f"budget_period must be one of {BudgetPeriod.values}, got {self.budget_period!r}")
        if self.cost_budget is not None:
            try:
                amount = Decimal(str(self.cost_budget))
            except InvalidOperation:
                amount = Decimal(-1)
            if not amount.is_finite() or amount < 0:
                raise ValueError(f"cost_budget must be a non-negative amount or None, got {self.cost_budget!r}")
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
