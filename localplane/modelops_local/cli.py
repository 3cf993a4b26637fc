"""`modelops-local`: the local plane's own command, and the `modelops local` / `modelops demo` it serves.

The plane is a package of its own (`pip install "modelops[local]"`) so that the operator, and the
operator image, never carry it. Users still type `modelops local up|down|status` and `modelops demo`:
the `modelops` CLI finds `local_command` and `demo_command` below through the `modelops.commands` entry
point group and never imports this package itself. `modelops-local up|down|status` and
`modelops-local demo` are the same commands under the plane's own name.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence

Runner = Callable[[argparse.Namespace], int]

# What the `local` extra installs beyond the operator's dependencies (pyproject.toml), by import name:
# the plane's API server validates every object with them and cannot start without them.
EXTRA = {"celpy": "cel-python", "kubernetes_validate": "kubernetes-validate"}


def _require_extra(parser: argparse.ArgumentParser) -> None:
    missing = [dist for module, dist in EXTRA.items() if importlib.util.find_spec(module) is None]
    if missing:
        parser.exit(
            2,
            f"{parser.prog}: the local plane needs {', '.join(missing)}, which its extra installs: "
            f'pip install "modelops[local]" (in a checkout, `make bootstrap` installs it).\n',
        )


def local_command(parser: argparse.ArgumentParser) -> Runner:
    """`modelops local`: adds `up|down|status` to the parser and returns what runs them."""
    from modelops_local import cluster

    _require_extra(parser)
    cluster.add_arguments(parser)
    run: Runner = cluster.run
    return run


def demo_command(parser: argparse.ArgumentParser) -> Runner:
    """`modelops demo`: train, register and serve the quickstart model on the local plane."""
    from modelops_local import demo

    _require_extra(parser)
    demo.add_arguments(parser)
    run: Runner = demo.run
    return run


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        parser = argparse.ArgumentParser(prog="modelops-local demo", description=demo_command.__doc__)
        run = demo_command(parser)
        return run(parser.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(
        prog="modelops-local",
        description="the whole platform on this machine, no cluster needed",
        epilog="modelops-local demo [--help]: train, register and serve a model on the local plane",
    )
    run = local_command(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
