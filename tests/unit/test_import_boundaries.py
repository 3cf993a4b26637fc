"""The operator never reaches into the local plane, the worker or what only their extras install.

The operator image installs `modelops` alone (no `local` or `worker` extra), so an import of the plane
(`modelops_local`), the worker (`modelops_worker`), the plane's CEL/schema libraries or any library only
those extras bring (torch, onnxruntime, grpc, obstore, ..., read from the installed metadata) from an
operator module is a crash in a cluster that no test on this machine, where every extra is installed,
would otherwise see. Two checks, since each misses what the other sees: the source of every operator
module is scanned for such imports, including lazy ones inside functions; and every operator module is
imported in a fresh interpreter, which also catches what a third-party library pulls in on our behalf.
The worker runs in pods without the plane, so it must not import the plane either.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator" / "modelops"
WORKER = ROOT / "images" / "worker" / "modelops_worker"

# What the operator must not load: the plane and its extra, and the worker (torch and friends).
NOT_FOR_THE_OPERATOR = ("modelops_local", "modelops_worker", "celpy", "kubernetes_validate")
NOT_FOR_THE_WORKER = ("modelops_local",)
# What a venv has before anything is installed in it (the operator image's has them too).
VENV_SEED = {"pip", "setuptools", "_distutils_hack", "pkg_resources"}


def _name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _closure(requirements: list[Requirement]) -> set[str]:
    """The distributions these requirements install, their own requirements included."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        if _name(req.name) in seen:
            continue
        seen.add(_name(req.name))
        try:
            requires = distribution(req.name).requires or []
        except PackageNotFoundError:
            continue
        todo += [
            r for r in map(Requirement, requires) if r.marker is None or r.marker.evaluate({"extra": ""})
        ]
    return seen


def extras_only_modules(
    extras: tuple[str, ...] = ("local", "worker"), beside: tuple[str, ...] = ()
) -> set[str]:
    """Top-level modules that only these extras install, not the base dependencies (nor the extras
    `beside`), as this venv has them: an image that installs neither has none of them. Derived from the
    installed metadata, so a library an extra gains later (an LLM engine, a storage client) is covered."""
    requirements = [Requirement(r) for r in distribution("modelops").requires or []]

    def of(names: tuple[str, ...]) -> list[Requirement]:
        return [r for r in requirements if r.marker and any(r.marker.evaluate({"extra": e}) for e in names)]

    base = _closure([r for r in requirements if r.marker is None] + of(beside))
    only = _closure(of(extras)) - base
    return {
        module
        for module, dists in packages_distributions().items()
        if dists and all(_name(d) in only for d in dists) and module not in VENV_SEED
    }


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


def violations(package: Path, forbidden: tuple[str, ...] | list[str]) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, name in _imported_names(tree):
            if name.split(".")[0] in forbidden:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return out


def test_operator_source_imports_nothing_of_the_plane_or_the_worker() -> None:
    found = violations(OPERATOR, (*NOT_FOR_THE_OPERATOR, *sorted(extras_only_modules())))
    assert not found, (
        "the operator image has neither the local plane nor the worker; reach them through an entry "
        "point (see modelops/cli.py) or move the code:\n" + "\n".join(found)
    )


def test_worker_source_imports_nothing_of_the_plane() -> None:
    plane_only = extras_only_modules(("local",), beside=("worker",))
    assert {"celpy", "kubernetes_validate"} <= plane_only
    found = violations(WORKER, (*NOT_FOR_THE_WORKER, *sorted(plane_only)))
    assert not found, (
        "the worker image has no local plane (it installs the worker extra only):\n" + "\n".join(found)
    )


# Imports every module of the operator package as in the operator image, where the forbidden packages
# are not installed: every import finder is wrapped so that it finds none of them (an import fails,
# importlib.util.find_spec says None) and records who asked. A third-party library may ask
# and cope with their absence (the kubernetes client's DynamicClient tries kubernetes_validate); an
# operator module may not. The `__main__` modules run the CLI, so they are left out.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
forbidden = set(sys.argv[1].split(","))
asked = []

class Hidden:  # a finder that finds nothing forbidden, as if not installed, and records who asked
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in forbidden:
            frame = sys._getframe(1)
            while frame and frame.f_code.co_filename.startswith(("<frozen", "<builtin")):
                frame = frame.f_back
            asked.append([name, frame.f_globals.get("__name__", "?") if frame else "?"])
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def invalidate_caches(self):
        getattr(self.finder, "invalidate_caches", lambda: None)()

sys.meta_path[:] = [Hidden(f) for f in sys.meta_path]
import modelops
failed = {}
def unlisted(package):
    failed[package] = "does not import, so its modules could not be listed: " + repr(sys.exc_info()[1])
names = [m.name for m in pkgutil.walk_packages(modelops.__path__, "modelops.", onerror=unlisted)]
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
    forbidden = {*NOT_FOR_THE_OPERATOR, *extras_only_modules()}
    # The derivation found what the extras are known to bring.
    assert {"torch", "celpy", "kubernetes_validate", "onnxruntime", "grpc"} <= forbidden
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, ",".join(sorted(forbidden))],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    # The walk really covered the operator: its controllers and the CLI are among what was imported.
    assert result["failed"] == {}, "operator modules that do not import without the plane and the worker"
    covered = {"modelops.cli", "modelops.controllers.entrypoint", "modelops.api.crdgen"}
    assert covered <= set(result["modules"])
    ours = [(name, by) for name, by in result["asked"] if by == "modelops" or by.startswith("modelops.")]
    assert ours == [], "operator modules that try to import what the operator image does not have"
    assert result["loaded"] == []
