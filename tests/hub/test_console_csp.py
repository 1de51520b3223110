"""The console's Content-Security-Policy: every page carries it, allows only the hub's own scripts and styles,
and the pages have nothing it would block (no inline script, no on* handler, no style attribute), so an injected
script does not run and the console still works (the browser test drives it under the same header)."""

from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from tests.support.console import acme_pages

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


class Inline(HTMLParser):
    """What a strict CSP blocks: <script> without src, on* attributes, style attributes and <style> blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> block")
        self.found += [f"<{tag} {n}=...>" for n in names if n.startswith("on") or n == "style"]


def test_every_console_page_has_a_strict_policy_and_nothing_inline(client, acme):
    operator = get_user_model().objects.create_superuser("root", "", "pw")
    pages = acme_pages(acme) + ["/console/", "/console/usage/", "/console/reports/", "/console/t/acme/limits/"]
    client.force_login(operator)
    for page in ["/console/login/", *pages]:
        if page == "/console/login/":
            response = client.__class__().get(page)
        else:
            response = client.get(page)
        if response.status_code == 302:  # a tenant's home page leads to its keys
            response = client.get(response.headers["location"])
        assert response.status_code == 200, page
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        if response["content-type"].startswith("text/html"):
            parser = Inline()
            parser.feed(response.content.decode())
            assert not parser.found, (page, parser.found)


def test_the_console_script_never_assigns_html_from_the_network():
    for script in (ROOT / "hub/static/console").glob("*.js"):
        text = script.read_text()
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "outerHTML" not in text, script
