"""Print the project's requirements from pyproject.toml alone, one per line, for the image builds.

The Dockerfiles install the dependencies in a layer of their own before copying the sources, so a change
to the code rebuilds only the last, small layer instead of downloading torch's neighbours again. They
run this file inside the build with the base image's Python (standard library only):

    python project_requirements.py worker --without torch --rename onnxruntime=onnxruntime-gpu

prints `project.dependencies` plus the `worker` extra, leaving out torch and installing onnxruntime's
requirement under the name onnxruntime-gpu with the same version specifier (the CUDA image's swap).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path


def split_requirement(requirement: str) -> tuple[str, str]:
    """The normalized package name and the rest (extras, specifier, marker) of a requirement."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(.*)", requirement, flags=re.DOTALL)
    if not match:
        raise ValueError(f"pyproject.toml: cannot read a package name from the requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2).strip()


def requirements(
    project: dict[str, object], extras: list[str], without: set[str], rename: dict[str, str]
) -> list[str]:
    dependencies = list(project.get("dependencies", []))  # type: ignore[call-overload]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})  # type: ignore[assignment]
    for extra in extras:
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r} (it has {', '.join(sorted(optional))})")
        dependencies += optional[extra]
    chosen: list[str] = []
    for requirement in dependencies:
        name, rest = split_requirement(requirement)
        if name in without:
            continue
        if name in rename:
            requirement = rename[name] + rest
        if requirement not in chosen:
            chosen.append(requirement)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("extras", nargs="*", help="extras of pyproject.toml to add to its dependencies")
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--without", action="append", default=[], help="a package to leave out")
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW: install OLD's spec as NEW")
    args = parser.parse_args(argv)
    project = tomllib.loads(args.pyproject.read_text())["project"]
    rename = dict(pair.split("=", 1) for pair in args.rename)
    chosen = requirements(project, args.extras, {split_requirement(w)[0] for w in args.without}, rename)
    sys.stdout.write("".join(f"{requirement}\n" for requirement in chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
