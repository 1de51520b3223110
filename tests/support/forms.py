"""The forms of a rendered page, read with the standard library's HTML parser: each form's method, action and
the values a browser would send for it as the page stands (text inputs, checked boxes and radios, selected
options, text areas), so a test can send a valid form with one field changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

# Values no browser form sends: NUL, numbers past an int32, an int64 and a float, 7 decimals, the ends of the
# calendar and an impossible date, very long text, a blank, Arabic-Indic digits.
ODD = [
    "\x00", "a\x00b", "-1", "0", "2147483648", "9223372036854775808", "1" + "0" * 30, "1e400", "NaN", "1.0000001",
    "9999-12-31", "0001-01-01", "2026-02-30", "99999-01", "x" * 5000, " ", "١٢",
]  # fmt: skip


@dataclass
class Form:
    method: str
    action: str
    fields: dict[str, list[str]] = field(default_factory=dict)  # name -> the values a browser sends

    def names(self) -> list[str]:
        """The fields a user fills in (not Django's CSRF token)."""
        return sorted(set(self.fields) - {"csrfmiddlewaretoken"})

    def data(self, **changed: str) -> dict[str, list[str]]:
        """The form as a browser would send it, with ``changed`` fields replaced."""
        return {**self.fields, **{name: [value] for name, value in changed.items()}}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._in_form = False  # fields outside a form (a script's controls) belong to none
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("method", "get").lower(), a.get("action", "")))
            self._in_form = True
        elif not self._in_form or "name" not in a:
            if tag == "option" and self._select is not None:
                self._options.append((a.get("value", ""), "selected" in a))
        elif tag == "input":
            kind = a.get("type", "text").lower()
            values = self.forms[-1].fields.setdefault(a["name"], [])
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    values.append(a.get("value", "on"))
            elif kind not in ("submit", "button", "reset", "file", "image"):
                values.append(a.get("value", ""))
        elif tag == "select":
            self._select, self._options = a["name"], []
        elif tag == "textarea":
            self._textarea = a["name"]
            self.forms[-1].fields.setdefault(a["name"], []).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select" and self._select is not None and self._in_form:
            chosen = [v for v, selected in self._options if selected] or [v for v, _ in self._options[:1]]
            self.forms[-1].fields[self._select] = chosen
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None and self._in_form:
            self.forms[-1].fields[self._textarea][-1] += data


def forms_of(html: str) -> list[Form]:
    reader = _Reader()
    reader.feed(html)
    return reader.forms
