"""The ``incentive`` command line.

Sub-commands live in :mod:`incentive.commands`, one module each, imported lazily so that
``incentive solve`` never pays for torch or diffusers. Every :class:`market.errors.UserError`
becomes a one-paragraph message and exit code 2; Ctrl-C exits 130 after the command's own
clean-up (results are written atomically, checkpoints are kept).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from market.errors import UserError

#: command name -> (module, one-line help). Modules are imported only when needed.
COMMANDS: dict[str, tuple[str, str]] = {
    "solve": ("incentive.commands.solve", "solve a market scenario and certify the equilibrium"),
    "scenario": ("incentive.commands.scenario", "create or check scenario files"),
    "compare": ("incentive.commands.compare", "compare the mechanism against alternative mechanisms"),
    "sweep": ("incentive.commands.sweep", "seeded parameter sweeps of the mechanism comparison"),
    "provision": ("incentive.commands.provision", "train, evaluate and compare provisioning policies"),
    "backend": ("incentive.commands.backend", "measure the diffusion backend (accuracy, tokens, latency)"),
    "run": ("incentive.commands.run", "end-to-end: market -> provisioning -> measured generation"),
    "stress": ("incentive.commands.stress", "stress-test an equilibrium: uniqueness, sensitivity, robustness"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser. Only the module of the requested command is imported."""
    parser = argparse.ArgumentParser(
        prog="incentive",
        description="AIGC incentive engine: certified edge-market equilibria, learned provisioning, measured generation.",
    )
    from incentive import __version__

    parser.add_argument("--version", action="version", version=f"incentive {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        if wanted == name:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("incentive.commands"):
                    sub = subparsers.add_parser(name, help=help_text)
                    sub.set_defaults(func=_not_available(name))
                    continue
                raise
            module.register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def _not_available(name: str):
    def run(_args) -> int:
        print(f"incentive {name}: not available in this build", file=sys.stderr)
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``incentive`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished work and checkpoints are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
