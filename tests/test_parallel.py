"""The suite's groups under pytest-xdist (tests/support/parallel.py), checked on a run of its own: two workers,
``--dist loadgroup`` as ``make test`` runs them, over a suite of ``live``, ``real_model`` and plain tests that
write down which worker ran them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import ROOT

CONFTEST = """
from tests.support import parallel
from tests.support.parallel import pytest_configure_node, pytest_xdist_make_scheduler

def pytest_configure(config):
    config.addinivalue_line("markers", "live: starts a service")
    config.addinivalue_line("markers", "real_model: loads a packaged model")
    parallel.configure(config)

def pytest_unconfigure(config):
    parallel.unconfigure(config)

def pytest_collection_modifyitems(config, items):
    parallel.publish(config, items)
"""

MODULE = """
import os, time
import pytest

pytestmark = [{marks}]

@pytest.mark.parametrize("i", range({count}))
def test_it(i, request):
    time.sleep(0.05)
    with open(os.environ["RAN"], "a") as f:
        f.write(request.node.nodeid + " " + os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


def test_each_group_runs_on_one_worker_and_the_two_on_different_ones(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "conftest.py").write_text(CONFTEST)
    modules = {"test_live_a": ("pytest.mark.live", 4), "test_live_b": ("pytest.mark.live", 3),
               "test_models": ("pytest.mark.real_model", 5), "test_plain": ("", 12)}  # fmt: skip
    for name, (marks, count) in modules.items():
        (suite / f"{name}.py").write_text(textwrap.dedent(MODULE.format(marks=marks, count=count)))
    ran = tmp_path / "ran.txt"
    env = {**os.environ, "RAN": str(ran), "PYTHONPATH": str(ROOT)}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only xdist: the suite's other plugins take seconds to start
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "xdist", "-n", "2",
         "--dist", "loadgroup", str(suite)],
        cwd=suite, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    workers: dict[str, set[str]] = {}
    for line in ran.read_text().splitlines():
        nodeid, worker = line.split()
        workers.setdefault(Path(nodeid.split("::")[0]).stem, set()).add(worker)
    assert len(ran.read_text().splitlines()) == 24, workers
    live = workers["test_live_a"] | workers["test_live_b"]
    assert len(live) == 1 and len(workers["test_models"]) == 1, workers
    assert live != workers["test_models"], workers
    assert workers["test_plain"] == {"gw0", "gw1"}, workers  # the rest shared out
