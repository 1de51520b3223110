"""Set a key's or a tenant's rate limits and token budget."""

from argparse import ArgumentTypeError
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.management.base import CommandError

from accounts import services
from accounts.limits import Limits
from accounts.management.commands._base import OperatorCommand, key_by_prefix, tenant_by_slug
from accounts.models import BudgetPeriod

UNSET = "none"


def add_limit_arguments(parser, *, streams: bool = True) -> None:
    """The limit options shared with create_api_key; 'none' (or 0 for nothing else) means no limit."""
    parser.add_argument("--rpm", type=_limit, default=None, help="requests per minute ('none': unlimited)")
    parser.add_argument("--tpm", type=_limit, default=None, help="tokens per minute ('none': unlimited)")
    parser.add_argument("--budget", type=_limit, default=None, help="tokens per budget period ('none': no budget)")
    parser.add_argument("--budget-period", choices=BudgetPeriod.values, default=None)
    parser.add_argument("--cost-budget", type=_amount, default=None,
                        help="money per budget period at the models' prices ('none': no money budget)")  # fmt: skip
    if streams:
        parser.add_argument("--max-streams", type=_limit, default=None, help="concurrent streams ('none': unlimited)")


def _limit(text: str) -> int | str:
    if text.lower() == UNSET:
        return UNSET
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"a limit must be a whole number or '{UNSET}', got {text!r}") from None
    if value < 1:  # argparse's own error: a CommandError here was a traceback on the command line
        raise ArgumentTypeError(f"a limit must be at least 1 (or '{UNSET}'), got {value}")
    return value


def _amount(text: str) -> str:
    if text.lower() == UNSET:
        return UNSET
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ArgumentTypeError(f"a money budget must be an amount or '{UNSET}', got {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise ArgumentTypeError(f"a money budget must be more than 0 (or '{UNSET}'), got {text}")
    return str(value)


def merged(current: Limits, options: dict) -> Limits:
    """``current`` with the options given on the command line changed ('none' clears one)."""
    values = current.as_dict()
    for option, name in (("rpm", "rpm"), ("tpm", "tpm"), ("budget", "budget"), ("max_streams", "max_streams"),
                         ("cost_budget", "cost_budget")):  # fmt: skip
        given = options.get(option)
        if given is not None:
            values[name] = None if given == UNSET else given
    if options.get("budget_period"):
        values["budget_period"] = options["budget_period"]
    try:
        return Limits(**values)
    except ValueError as exc:  # a value the columns can not hold
        raise CommandError(str(exc)) from None


def describe(limits: Limits) -> str:
    def show(value):
        return "unlimited" if value is None else f"{value:,}"

    text = f"rpm {show(limits.rpm)}, tpm {show(limits.tpm)}, budget {show(limits.budget)} per {limits.budget_period}"
    money = "none" if limits.cost_budget is None else f"{limits.cost_budget} {settings.HUB_CURRENCY}"
    return text + f", streams {show(limits.max_streams)}, money budget {money}"


class Command(OperatorCommand):
    help = (
        "Set limits: set_limits <key-prefix> [--rpm N] [--tpm N] [--max-streams N] [--budget N --budget-period "
        "day|month], or set_limits --tenant <slug> [...] (no --max-streams). 'none' removes a limit; options "
        "not given stay as they are."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix", nargs="?", help="the key's prefix (see list_api_keys)")
        parser.add_argument("--tenant", default=None, help="set the tenant's limits instead of a key's")
        add_limit_arguments(parser)

    def handle(self, prefix, tenant, **options):
        if (prefix is None) == (tenant is None):
            raise CommandError("name a key prefix or --tenant <slug>, not both")
        owner = tenant_by_slug(tenant) if tenant else key_by_prefix(prefix)
        if tenant and options.get("max_streams") is not None:
            raise CommandError("--max-streams applies to keys only")
        limits = merged(Limits.of(owner), options)
        services.set_limits(owner, limits)
        name = f"tenant {owner.slug}" if tenant else f"key {owner.prefix}"
        self.stdout.write(f"{name}: {describe(limits)}")
