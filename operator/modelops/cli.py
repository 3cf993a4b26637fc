"""The `modelops` command: one binary for the operator, the local control plane and the demo.

Subcommands import their modules lazily, so `modelops operator` in a cluster never loads the local
plane, and `--help` works everywhere.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from modelops import __version__

Runner = Callable[[argparse.Namespace], int]


def _operator(parser: argparse.ArgumentParser) -> Runner:
    from modelops.controllers import entrypoint

    entrypoint.add_arguments(parser)
    run: Runner = entrypoint.run
    return run


def _local(parser: argparse.ArgumentParser) -> Runner:
    from modelops.local import cluster

    cluster.add_arguments(parser)
    run: Runner = cluster.run
    return run


def _demo(parser: argparse.ArgumentParser) -> Runner:
    from modelops import demo

    demo.add_arguments(parser)
    run: Runner = demo.run
    return run


def _console(parser: argparse.ArgumentParser) -> Runner:
    from modelops.console import server

    server.add_arguments(parser)
    run: Runner = server.run
    return run


def _crds(parser: argparse.ArgumentParser) -> Runner:
    def run(args: argparse.Namespace) -> int:
        from modelops.api import KINDS
        from modelops.api.crdgen import render

        sys.stdout.write("---\n".join(render(info) for info in KINDS))
        return 0

    return run


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Runner]]] = {
    "operator": ("run the operator (in a cluster, with a kubeconfig, or on the local plane)", _operator),
    "local": ("run the whole platform on this machine, no cluster needed", _local),
    "demo": ("train, register and serve a model on the local plane, end to end", _demo),
    "console": ("a read-only web console: training curves, versions side by side, rollouts", _console),
    "crds": ("print the CustomResourceDefinitions (pipe into kubectl apply -f -)", _crds),
}


def build_parser(argv: Sequence[str]) -> tuple[argparse.ArgumentParser, dict[str, Runner]]:
    parser = argparse.ArgumentParser(prog="modelops", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"modelops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    runners: dict[str, Runner] = {}
    # Only the chosen subcommand's module is imported; the rest appear in --help by name alone.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (help_text, setup) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            runners[name] = setup(child)
    return parser, runners


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, runners = build_parser(argv)
    args = parser.parse_args(argv)
    return runners[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
