"""The operator never reaches into the local plane, the worker or the plane's validation libraries.

The operator image installs `modelops` alone (no `local` or `worker` extra), so an import of the plane
(`modelops_local`), the worker (`modelops_worker`, torch) or the plane's CEL/schema libraries from any
operator module is a crash in a cluster that no test on this machine, where every extra is installed,
would otherwise see. Two checks, since each misses what the other sees: the source of every operator
module is scanned for such imports, including lazy ones inside functions; and every operator module is
imported in a fresh interpreter, which also catches what a third-party library pulls in on our behalf.
The worker runs in pods without the plane, so it must not import the plane either.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator" / "modelops"
WORKER = ROOT / "images" / "worker" / "modelops_worker"

# What the operator must not load: the plane and its extra, and the worker (torch and friends).
NOT_FOR_THE_OPERATOR = ("modelops_local", "modelops_worker", "celpy", "kubernetes_validate")
NOT_FOR_THE_WORKER = ("modelops_local",)


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an AST imports by name: import statements, and importlib/`__import__` calls with
    a literal name (how a lazy import hides from a plain grep)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__", "find_spec") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def violations(package: Path, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, name in _imported_names(tree):
            if name.split(".")[0] in forbidden:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


def test_operator_source_imports_nothing_of_the_plane_or_the_worker() -> None:
    found = violations(OPERATOR, NOT_FOR_THE_OPERATOR)
    assert not found, (
        "the operator image has neither the local plane nor the worker; reach them through an entry "
        "point (see modelops/cli.py) or move the code:\n" + "\n".join(found)
    )


def test_worker_source_imports_nothing_of_the_plane() -> None:
    found = violations(WORKER, NOT_FOR_THE_WORKER)
    assert not found, "the worker image has no local plane:\n" + "\n".join(found)


# Imports every module of the operator package as in the operator image, where the forbidden packages
# are not installed: an import finder refuses them and records who asked. A third-party library may ask
# and cope with their absence (the kubernetes client's DynamicClient tries kubernetes_validate); an
# operator module may not. The `__main__` modules run the CLI, so they are left out.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
forbidden = set(sys.argv[1].split(","))
asked = []

class NotInTheImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in forbidden:
            return None
        frame = sys._getframe(1)
        while frame and frame.f_code.co_filename.startswith(("<frozen", "<builtin")):
            frame = frame.f_back
        asked.append([name, frame.f_globals.get("__name__", "?") if frame else "?"])
        raise ModuleNotFoundError(f"No module named {name!r} (not in the operator image)", name=name)

sys.meta_path.insert(0, NotInTheImage())
import modelops
failed, names = {}, [m.name for m in pkgutil.walk_packages(modelops.__path__, "modelops.")]
for name in names:
    if name.rsplit(".", 1)[-1] == "__main__":
        continue
    try:
        importlib.import_module(name)
    except Exception as e:
        failed[name] = repr(e)
loaded = sorted(m for m, mod in sys.modules.items() if m.split(".")[0] in forbidden and mod is not None)
print(json.dumps({"modules": names, "failed": failed, "asked": asked, "loaded": loaded}))
"""


def test_every_operator_module_imports_without_the_plane_and_the_worker() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, ",".join(NOT_FOR_THE_OPERATOR)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    # The walk really covered the operator: its controllers and the CLI are among what was imported.
    covered = {"modelops.cli", "modelops.controllers.entrypoint", "modelops.api.crdgen"}
    assert covered <= set(result["modules"])
    assert result["failed"] == {}, "operator modules that do not import without the plane and the worker"
    ours = [(name, by) for name, by in result["asked"] if by == "modelops" or by.startswith("modelops.")]
    assert ours == [], "operator modules that try to import what the operator image does not have"
    assert result["loaded"] == []
