"""The `modelops` command: one binary for the operator, the local control plane and the demo.

Subcommands import their modules lazily, so `modelops operator` in a cluster never loads more than it
needs, and `--help` works everywhere. `local` and `demo` belong to the local plane, a package of its own
(`modelops_local`, the `local` extra) that the operator never imports: they are found through the
`modelops.commands` entry point group, and where the plane is not installed they say how to install it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import cast

from modelops import __version__

Runner = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], Runner]

# Where `modelops_local` registers `local` and `demo` (pyproject.toml, [project.entry-points]).
COMMAND_GROUP = "modelops.commands"


def _operator(parser: argparse.ArgumentParser) -> Runner:
    from modelops.controllers import entrypoint

    entrypoint.add_arguments(parser)
    run: Runner = entrypoint.run
    return run


def _installed(name: str) -> Setup:
    """A subcommand the local plane's package provides, looked up only when it is the one chosen."""

    def setup(parser: argparse.ArgumentParser) -> Runner:
        found = entry_points(group=COMMAND_GROUP, name=name)
        try:
            command = cast(Setup, next(iter(found)).load()) if found else None
        except ModuleNotFoundError as e:  # registered, but this install left the package out
            if not (e.name or "").startswith("modelops_local"):
                raise
            command = None
        if command is None:
            parser.exit(
                2,
                f"modelops {name}: the local plane is not installed here (the operator image leaves it "
                f'out). It ships as the `local` extra: pip install "modelops[local]" (in a checkout, '
                f"`make bootstrap` installs it).\n",
            )
        return command(parser)

    return setup


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


COMMANDS: dict[str, tuple[str, Setup]] = {
    "operator": ("run the operator (in a cluster, with a kubeconfig, or on the local plane)", _operator),
    "local": ("run the whole platform on this machine, no cluster needed", _installed("local")),
    "demo": ("train, register and serve a model on the local plane, end to end", _installed("demo")),
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
