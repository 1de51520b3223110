"""What is shared between tests lives in ``tests/support/`` (and the OpenAI spec in ``tests/openai_spec/``): no test
module, ``conftest.py`` or benchmark imports from a test module or a ``conftest.py``, so a test file can be moved,
renamed or run alone without breaking another. And the markers hold: a test that starts a server or runs a packaged
model without its marker fails (``tests/support/markers.py``)."""

from __future__ import annotations

import ast

import pytest

from tests.support import ROOT

SHARED = ("tests.support", "tests.openai_spec")


def _imports(path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


def violations(files) -> list[tuple[str, str]]:
    """(file, module) for each import of ours from ``tests`` that is not a shared package (or is relative)."""
    return [
        (path.name, module)
        for path in files
        for module in _imports(path)
        if module.startswith(".") or (module.split(".")[0] == "tests" and not module.startswith(SHARED))
    ]


def test_tests_and_benchmarks_import_only_the_shared_packages_of_tests():
    files = sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])
    assert len(files) > 80
    assert violations(files) == []


def test_the_check_catches_an_import_from_a_test_module_or_conftest(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "from tests.inference.test_tool_grammar import WEATHER\nfrom tests.conftest import free_port\n"
        "from .helpers import x\nimport tests.e2e.conftest\nfrom tests.support.samples import TOOLS\n"
        "from tests.openai_spec import assert_valid\nimport os\n"
    )
    assert violations([sample]) == [
        ("test_sample.py", "tests.inference.test_tool_grammar"),
        ("test_sample.py", "tests.conftest"),
        ("test_sample.py", ".helpers"),
        ("test_sample.py", "tests.e2e.conftest"),
    ]


def test_a_helper_that_starts_a_server_refuses_a_test_without_the_marker():
    """``-m "not live"`` leaves out every test that starts a server: one that is not marked cannot start one."""
    from tests.support.hub import start_hub
    from tests.support.inference import start_service
    from tests.support.models import loaded

    with pytest.raises(AssertionError, match="starts a hub: mark it 'live'"):
        start_hub({})
    with pytest.raises(AssertionError, match="starts an inference service: mark it 'live'"):
        start_service("--model", "x=packaged:smollm2:chat")
    with pytest.raises(AssertionError, match="loads the packaged model smollm2: mark it 'real_model'"):
        loaded("smollm2")


@pytest.mark.live
def test_a_live_test_still_needs_real_model_to_serve_a_packaged_model():
    from tests.support.inference import start_service

    with pytest.raises(AssertionError, match="serves a packaged model: mark it 'real_model'"):
        start_service("--model", "x=packaged:smollm2:chat")
