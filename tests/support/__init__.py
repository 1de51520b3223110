"""What the tests and the benchmarks share, written once: processes on loopback ports with a log and a health poll
(``processes``), the live hub's helpers (``hub``), the live inference service (``inference``), the packaged models
loaded once (``models``), random-weight checkpoints (``checkpoints``), an image server (``images``), a TCP proxy
(``tcp_proxy``), the live end-to-end setup's names and barriers (``live``), sample requests (``samples``) and the
kernel tests' cases (``kernel_cases``).

Nothing here is a test. Test modules import from here (and ``tests.openai_spec``), never from each other or from a
``conftest.py``; ``tests/test_layout.py`` holds that.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
