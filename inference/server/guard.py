"""A guard model's way of judging a conversation (Llama Guard 1 to 4 and models trained on its format): its chat
template wraps the conversation in a task that lists the unsafe-content categories (``S1: Violent Crimes.``, or
Llama Guard 1's ``O1: Violence and Hate.``), and the model answers ``safe`` or ``unsafe`` with the codes of the
categories violated on the next line.

Read once per model (``detect``): the categories, from a conversation rendered by its own template, each mapped to
OpenAI's moderation categories by its name; the grammar that keeps the answer to a verdict over those codes. Per
answer: the verdict and codes (``verdict``) and the probability of "unsafe" (``unsafe_probability``), which is the
score Llama Guard's paper classifies by: the model's own distribution over its first word, safe against unsafe.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

# OpenAI's moderation categories, in its order (CreateModerationResponse)
OPENAI_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent", "self-harm",
    "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip

# a guard category's name -> the OpenAI categories it flags; every rule that matches adds its own. Names from Llama
# Guard 1 (O1-O6), 2 (S1-S11), 3 and 4 (S1-S14). Specialized advice, privacy, intellectual property, elections and
# code interpreter abuse have no OpenAI category: they flag the input and no category.
_RULES = (
    (r"child", ("sexual/minors",)),
    (r"non-violent crime", ("illicit",)),
    (r"(?<!non-)violent crime", ("violence", "illicit/violent")),
    (r"sex(-related)? crime", ("sexual", "illicit")),
    (r"criminal planning|controlled substance", ("illicit",)),
    (r"weapon", ("illicit/violent",)),
    (r"^violence", ("violence",)),
    (r"hate", ("hate",)),
    (r"defamation|harass", ("harassment",)),
    (r"self-harm|suicide", ("self-harm",)),
    (r"sexual content", ("sexual",)),
)
_CATEGORY_LINE = re.compile(r"^\s*([SO][0-9]{1,2}):\s*(.+?)\.?\s*$", re.MULTILINE)
_CATEGORIES_BLOCK = re.compile(r"<BEGIN UNSAFE CONTENT CATEGORIES>(.*?)<END UNSAFE CONTENT CATEGORIES>", re.DOTALL)
PROBE = "Hello"  # the conversation rendered to read the categories: any user message


def openai_categories(name: str) -> tuple[str, ...]:
    """The OpenAI categories a guard category named ``name`` flags (none for those OpenAI has no category for)."""
    lowered = name.lower()
    found: list[str] = []
    for pattern, categories in _RULES:
        if re.search(pattern, lowered):
            found += [c for c in categories if c not in found]
    return tuple(found)


@dataclass(frozen=True)
class GuardFormat:
    categories: dict[str, str]  # code -> its name, as the template lists them ("S1" -> "Violent Crimes")
    guide: object = field(default=None, compare=False)  # ``grammar()`` compiled for this model, once, at its load

    def grammar(self) -> str:
        """The answer: optional blank space, then ``safe``, or ``unsafe``, a newline and one or more of the codes."""
        codes = " | ".join(json.dumps(c) for c in sorted(self.categories, key=lambda c: (-len(c), c)))
        return (
            'start: verdict | BLANK verdict\nverdict: "safe" | "unsafe" "\\n" codes\n'
            f'codes: code ("," code)*\ncode: {codes}\nBLANK: /[ \\t\\n]+/\n'
        )

    def flags(self, codes: list[str]) -> set[str]:
        """The OpenAI categories that the named codes flag."""
        return {c for code in codes if code in self.categories for c in openai_categories(self.categories[code])}


def read_categories(prompt: str) -> dict[str, str]:
    """The categories a rendered guard prompt lists, code -> name; empty if it lists none."""
    block = _CATEGORIES_BLOCK.search(prompt)
    return dict(_CATEGORY_LINE.findall(block.group(1))) if block else {}


def detect(render) -> GuardFormat | None:
    """The guard format of a model whose ``render(messages) -> str`` is its chat template; None if the template
    lists no unsafe-content categories (not a guard model)."""
    categories = read_categories(render([{"role": "user", "content": PROBE}]))
    return GuardFormat(categories) if categories else None


def verdict(text: str) -> tuple[bool, list[str]]:
    """(unsafe, the codes named, each once, in order) of an answer."""
    head, _, rest = text.strip().partition("\n")
    unsafe = head.strip() == "unsafe"
    codes = list(dict.fromkeys(c.strip() for c in rest.split(",") if c.strip())) if unsafe else []
    return unsafe, codes


def _word(token_text: str) -> str | None:
    """Which first word a token begins: "unsafe", "safe", or None (blank space, anything else)."""
    text = token_text.lstrip()
    if not text:
        return None
    for word in ("unsafe", "safe"):  # disjoint: they start with different letters
        if word.startswith(text) or text.startswith(word):
            return word
    return None


def unsafe_probability(choices: list[tuple[str, float]], unsafe: bool) -> float:
    """P(unsafe) / (P(safe) + P(unsafe)) at the answer's first word, from ``choices`` (token text, logprob): the
    chosen token and the model's likeliest ones there. Without either word among them, the verdict's own 1 or 0."""
    mass = {"safe": 0.0, "unsafe": 0.0}
    for text, logprob in dict(choices).items():
        word = _word(text)
        if word is not None:
            mass[word] += math.exp(logprob)
    total = mass["safe"] + mass["unsafe"]
    return mass["unsafe"] / total if total > 0.0 else float(unsafe)
