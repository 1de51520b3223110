"""OpenAI's attribute filters of a vector store search: a comparison (``eq``, ``ne``, ``gt``, ``gte``, ``lt``,
``lte``, ``in``, ``nin`` of an attribute's value) or a compound of them (``and``, ``or``), checked when the request
comes in (``check``) and applied to each file's attributes (``matches``). An attribute a file lacks matches no
comparison but ``ne`` and ``nin``."""

from __future__ import annotations

from typing import Any

from hub.api import errors

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
MAX_DEPTH = 8


def _refuse(param: str, message: str) -> errors.InvalidRequest:
    return errors.InvalidRequest(message, param=param, code="invalid_value")


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float))  # bool is an int


def check(node: Any, param: str = "filters", depth: int = 0) -> None:
    if not isinstance(node, dict):
        raise _refuse(param, f"Invalid '{param}': expected an object.")
    kind = node.get("type")
    if kind in ("and", "or"):
        filters = node.get("filters")
        if not isinstance(filters, list) or depth >= MAX_DEPTH:
            raise _refuse(f"{param}.filters", f"Invalid '{param}.filters': expected an array (at most {MAX_DEPTH} "
                          "levels deep).")  # fmt: skip
        for i, child in enumerate(filters):
            check(child, f"{param}.filters[{i}]", depth + 1)
        return
    if kind not in COMPARISONS:
        raise _refuse(f"{param}.type", f"Invalid '{param}.type': expected one of {', '.join(COMPARISONS)}, and or or.")
    if not isinstance(node.get("key"), str):
        raise _refuse(f"{param}.key", f"Invalid '{param}.key': expected a string.")
    value = node.get("value")
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(_scalar(v) and not isinstance(v, bool) for v in value):
            raise _refuse(f"{param}.value", f"Invalid '{param}.value': '{kind}' takes an array of strings or numbers.")
    elif not _scalar(value):
        raise _refuse(f"{param}.value", f"Invalid '{param}.value': expected a string, a number or a boolean.")


def _ordered(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` compare: two numbers, or two strings."""
    numbers = (int, float)
    return (isinstance(a, numbers) and isinstance(b, numbers)) or (isinstance(a, str) and isinstance(b, str))


def matches(node: dict, attributes: dict) -> bool:
    kind = node["type"]
    if kind == "and":
        return all(matches(child, attributes) for child in node["filters"])
    if kind == "or":
        return any(matches(child, attributes) for child in node["filters"])
    present = node["key"] in attributes
    have, want = attributes.get(node["key"]), node["value"]
    if kind in ("ne", "nin"):
        return not present or (have != want if kind == "ne" else have not in want)
    if not present:
        return False
    if kind == "eq":
        return have == want and isinstance(have, bool) == isinstance(want, bool)
    if kind == "in":
        return have in want
    if not _ordered(have, want):
        return False
    return {"gt": have > want, "gte": have >= want, "lt": have < want, "lte": have <= want}[kind]
