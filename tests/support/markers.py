"""The suite's markers, so a developer can run a fast subset (``-m "not real_model and not interpreter and not
browser and not live"``), and the check that keeps them true: the helpers that start a server or load a packaged
model call ``require``, which fails a test that lacks the marker, so deselecting a marker really leaves out what
it names.

``tests/conftest.py`` registers them and adds those that follow from a test's place or fixtures; the rest are
``pytestmark`` in the modules that need them.
"""

from __future__ import annotations

MARKERS = {
    "real_model": "runs a packaged model (SmolLM2, Gemma 3, MiniLM) in this process or in a service it starts",
    "interpreter": "runs Triton kernels under the interpreter on the CPU (TRITON_INTERPRET=1): slow",
    "browser": "drives Debian's Chromium through Playwright",
    "live": "starts a hub or an inference service on a loopback port",
}

_current: set[str] | None = None  # the running test's markers; None outside a test (the benchmarks)


def set_current(markers: set[str] | None) -> None:
    global _current
    _current = markers


def require(marker: str, what: str) -> None:
    """Fail unless the running test carries ``marker`` (``what``: what the test does that needs it)."""
    if _current is not None and marker not in _current:
        raise AssertionError(f"this test {what}: mark it {marker!r} (tests/support/markers.py)")
