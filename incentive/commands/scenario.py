"""``incentive scenario``: create (``new``) or validate (``check``) scenario files.

``incentive scenario new --asps N --mus M --seed S [--out FILE]`` writes a valid seeded
scenario (to stdout without ``--out``); ``incentive scenario check FILE`` validates a file
and prints a summary (exit 2 with the file and field named when it is malformed).

Cheap to import: the market package is imported inside the functions.
"""
from __future__ import annotations

import argparse

from incentive import args as types
from incentive.args import no_action as _no_action


def register(subparsers) -> None:
    """Add the ``scenario`` parser with its ``new`` and ``check`` sub-commands."""
    p = subparsers.add_parser("scenario", help="create or check scenario files",
                              description="Create (new) or validate (check) market scenario files.")
    sub = p.add_subparsers(dest="scenario_command", metavar="ACTION")
    new = sub.add_parser("new", help="write a seeded random scenario")
    new.add_argument("--asps", type=types.count(1, 100_000), required=True, help="number of ASPs (>= 1)")
    new.add_argument("--mus", type=types.count(1, 10_000_000), required=True, help="number of MUs (>= 1)")
    new.add_argument("--seed", type=types.seed, default=0, help="random seed (>= 0)")
    new.add_argument("--out", default=None, help="output file (default: print to stdout)")
    new.add_argument("--name", default=None, help="scenario name")
    new.add_argument("--bandwidth-model", choices=("linear", "shannon"), default="linear")
    new.add_argument("--asp-cost", choices=("linear", "quadratic"), default="linear")
    new.set_defaults(func=run_new)
    check = sub.add_parser("check", help="validate a scenario file")
    check.add_argument("file", help="scenario TOML file")
    check.set_defaults(func=run_check)
    p.set_defaults(func=lambda args: _no_action("scenario", ("new", "check")))


def run_new(args: argparse.Namespace) -> int:
    """Generate and write (or print) a scenario."""
    from market.errors import UserError
    from market.generator import generate_scenario
    from market.scenario import write_scenario

    if args.asps < 1 or args.mus < 1:
        raise UserError("--asps and --mus must be at least 1")
    if args.seed < 0:
        raise UserError("--seed must be >= 0")
    if args.out is not None:
        from incentive.outdir import check_output_file

        check_output_file(args.out)
    scenario = generate_scenario(args.asps, args.mus, args.seed, name=args.name,
                                 bandwidth_model=args.bandwidth_model, asp_cost=args.asp_cost)
    if args.out:
        write_scenario(scenario, args.out)
        print(f"wrote {args.out}: {args.asps} ASPs, {args.mus} MUs, seed {args.seed}")
    else:
        import tomli_w

        print(tomli_w.dumps(scenario.to_dict()), end="")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Validate a scenario file and print a summary."""
    from market.model import Market
    from market.scenario import load_scenario

    scenario = load_scenario(args.file)
    market = Market.from_scenario(scenario)
    extra = f"; extra tables: {', '.join(scenario.extra_tables)}" if scenario.extra_tables else ""
    print(f"{args.file}: ok (format version {scenario.market.version}): {market.n_asps} ASPs, {market.n_mus} MUs, "
          f"bandwidth_model={market.bandwidth_model}, asp_cost={market.asp_cost}{extra}")
    return 0
