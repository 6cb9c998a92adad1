"""The ``incentive`` command line.

Sub-commands live in :mod:`incentive.commands`, one module each, imported lazily so that
``incentive solve`` never pays for torch or diffusers. Every :class:`market.errors.UserError`
becomes a one-paragraph message and exit code 2, and so does a bad argument (one line, no usage
dump) and an operating-system error while reading or writing (a full disk, a read-only mount).
Ctrl-C and SIGTERM both exit 130 after the command's own clean-up (results are written
atomically, staging folders are removed, checkpoints are kept).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from market.errors import UserError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that every clean-up path runs."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``error: incentive solve: --seed: ...``), exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")

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
    "prompts": ("incentive.commands.prompts", "interactive prompt engineering: corpus, dataset D, GAIL, service rounds"),
    "denoise": ("incentive.commands.denoise", "distributed denoising: G-DDPG, baselines and the exact optimum"),
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the parser. Only the module of the requested command is imported."""
    parser = OneLineParser(
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
    with _sigterm_as_interrupt():
        try:
            parser = build_parser(argv)
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a bad argument (already printed)
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except KeyboardInterrupt as exc:
            return _interrupted(exc)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if not argv else 2
        try:
            return int(args.func(args) or 0)
        except UserError as exc:
            print(f"error: {_one_line(str(exc))}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt as exc:
            return _interrupted(exc)
        except OSError as exc:  # the environment, not the input: a full disk, a read-only mount, ...
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 2
        finally:
            from incentive.outdir import forget_claims

            forget_claims()


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _interrupted(exc: KeyboardInterrupt) -> int:
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    print(f"{what}: finished work and checkpoints are kept; partial output was removed", file=sys.stderr)
    return 130


class _sigterm_as_interrupt:
    """While the CLI runs in the main thread, SIGTERM raises :class:`Terminated` (like Ctrl-C)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise Terminated()

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
