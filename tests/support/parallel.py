"""The suite's groups under pytest-xdist (``make test`` runs two workers with ``--dist loadgroup``): the tests that
start a service with the packaged models (``live``) run on one worker, one after another, and those that load them
in-process (``real_model``) on one, so each is loaded once and never in both workers at once (24 GiB of memory).

pytest-xdist's own ``loadgroup`` no longer groups on pytest 9.2: it marks a group by appending ``@group`` to the
test's ``_nodeid``, which pytest's structured node ids ignore (pytest-dev/pytest-xdist#1386). So the groups travel
another way: each worker writes ``{node id: group}`` for what it collected into a directory the controller hands it
(``workerinput``), and the controller's scheduler, xdist's ``LoadScopeScheduling``, takes a group as one scope and
every other test as a scope of its own. Scopes go out largest first (xdist's ``loadscopereorder``), so the two
groups start at once, one on each worker, and the short tests fill in around them.

Hooks for ``tests/conftest.py``, which imports them; without ``-n`` (one process) nothing here runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_DIRECTORY = pytest.StashKey[str]()
_KEY = "hub_test_groups"  # in a worker's workerinput: the directory it writes its groups into


def group_of(item: pytest.Item) -> str | None:
    """The group a test runs in, from the markers that name what it loads."""
    if item.get_closest_marker("live"):
        return "live"
    if item.get_closest_marker("real_model"):
        return "models"
    return None


def configure(config: pytest.Config) -> None:
    """In the controller of a parallel run: the directory the workers write their groups into."""
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):
        config.stash[_DIRECTORY] = tempfile.mkdtemp(prefix="pytest-groups-")


def unconfigure(config: pytest.Config) -> None:
    if _DIRECTORY in config.stash:
        shutil.rmtree(config.stash[_DIRECTORY], ignore_errors=True)


def publish(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a worker: its collection's groups, for the controller's scheduler (written whole, then renamed)."""
    directory = getattr(config, "workerinput", {}).get(_KEY)
    if directory is None:
        return
    groups = {item.nodeid: f"group:{group}" for item in items if (group := group_of(item))}
    target = Path(directory) / f"{config.workerinput['workerid']}.json"
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(groups))
    os.replace(partial, target)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    if _DIRECTORY in node.config.stash:
        node.workerinput[_KEY] = node.config.stash[_DIRECTORY]


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadgroup" or _DIRECTORY not in config.stash:
        return None
    from xdist.scheduler import LoadScopeScheduling

    directory = Path(config.stash[_DIRECTORY])

    class GroupScheduling(LoadScopeScheduling):
        """One scope per group, one per test otherwise. Scopes are first asked for once every worker has sent its
        collection, so every worker's groups are written by then."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                self.groups = {}
                for written in sorted(directory.glob("*.json")):
                    self.groups.update(json.loads(written.read_text()))
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)
