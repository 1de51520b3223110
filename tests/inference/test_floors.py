"""The floors of the code (issue 20): imports run downward only.

Every module under ``kernels/``, ``inference/`` and ``accounts/`` is parsed (nothing is imported) and each import
of our own code in it, at the top of the module or inside a function, must land on the importing module's own
floor or on one below it. A violation is reported as ``file:line``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("kernels", "inference", "accounts")  # the trees whose modules are parsed
OURS = (*CHECKED, "hub")  # the top-level packages that are our code

# Bottom to top: a module may import from its own floor and from the floors below it, never from one above. A
# module is on the floor of the longest name here that is it or one of its packages, so a module not placed
# explicitly sits on its root's floor (``kernels``, ``inference``, ``accounts``, ``hub``).
FLOORS: list[tuple[str, ...]] = [
    ("kernels",),  # imports nothing of ours
    # plain values every floor may read
    ("inference", "inference.env", "inference.errors", "inference.sampling_params", "inference.packaged"),
    ("inference.layers",),
    ("inference.models",),
    # between the models and the engine: what configures, loads, prepares and feeds a model
    (
        "inference.config",
        "inference.tokenizer",
        "inference.loader",
        "inference.multimodal",
        "inference.weights",
        "inference.weights_cache",
        "inference.cpu",
        "inference.parallel",
        "inference.function_calling",
        "inference.audio",
        "inference.speech",
    ),
    ("inference.engine",),
    ("inference.server", "inference.__main__"),
    # the control plane, above the service: the service never imports it (the hub reaches it over HTTP)
    ("accounts",),
    ("hub",),
]


def _module_names() -> dict[str, Path]:
    """Dotted name -> file of every module of ours (``pkg/__init__.py`` is ``pkg``)."""
    names = {}
    for root in OURS:
        for path in sorted((ROOT / root).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


MODULES = _module_names()


def placed(name: str) -> tuple[int, str] | None:
    """(floor, the name in FLOORS that places it) of a dotted module name; None for code that is not ours."""
    best = None
    for index, entries in enumerate(FLOORS):
        for entry in entries:
            if (name == entry or name.startswith(entry + ".")) and (best is None or len(entry) > len(best[1])):
                best = (index, entry)
    return best


def floor_of(name: str) -> int | None:
    where = placed(name)
    return None if where is None else where[0]


def imports(name: str, tree: ast.AST, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported module) of every import of our code in the module ``name`` (parsed as ``tree``), wherever
    it is: at the top, in a function, under ``TYPE_CHECKING``."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one package up per extra dot
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # ``from pkg import module`` imports the module
                module = f"{base}.{alias.name}"
                found.append((node.lineno, module if module in MODULES else base))
    return [(line, target) for line, target in found if target.split(".")[0] in OURS]


def violations() -> list[str]:
    out = []
    for name, path in MODULES.items():
        if name.split(".")[0] not in CHECKED:
            continue
        floor, entry = placed(name)
        tree = ast.parse(path.read_text(), str(path))
        for line, target in sorted(set(imports(name, tree, is_package=path.name == "__init__.py"))):
            target_floor, target_entry = placed(target)
            if target_floor > floor:
                out.append(
                    f"{path.relative_to(ROOT)}:{line}: {name} (floor {floor}, {entry}) imports {target} "
                    f"(floor {target_floor}, {target_entry})"
                )
    return out


def test_every_floor_names_our_code():
    """A floor that names no module is stale (a module moved or was renamed): the list must follow the code."""
    stale = [e for entries in FLOORS for e in entries if not any(m == e or m.startswith(e + ".") for m in MODULES)]
    assert not stale, f"floors naming no module: {stale}"


def test_the_checker_sees_imports():
    """The checker itself: upward imports (absolute, relative, inside a function, ``from pkg import module``)
    are found, and the floors are in the order the layers are."""
    source = "import torch\nfrom inference.layers import norm\ndef f():\n    from inference import engine\n"
    source += "    from ..server import app\n    from . import attention\n"
    found = imports("inference.layers.rotary", ast.parse(source))
    assert found == [
        (2, "inference.layers.norm"), (4, "inference.engine"), (5, "inference.server.app"),
        (6, "inference.layers.attention"),
    ]  # fmt: skip
    assert floor_of("inference.layers.rotary") == floor_of("inference.layers.norm") < floor_of("inference.engine")
    assert floor_of("kernels.rms_norm") < floor_of("inference.env") < floor_of("inference.layers.attention")
    assert floor_of("inference.layers") < floor_of("inference.models") < floor_of("inference.multimodal.prompt")
    assert floor_of("inference.loader.gguf") < floor_of("inference.engine") < floor_of("inference.server.app")
    assert floor_of("inference.server") < floor_of("accounts.services") < floor_of("hub.inference_client")
    assert floor_of("torch") is None


def test_imports_run_downward():
    found = violations()
    assert not found, "imports running up a floor:\n" + "\n".join(found)
