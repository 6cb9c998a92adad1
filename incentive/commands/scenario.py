"""``incentive scenario``: create (``new``) or validate (``check``) scenario files.

``incentive scenario new --asps N --mus M --seed S [--out FILE] [--format toml|parquet]``
writes a valid seeded scenario (TOML to stdout without ``--out``); ``incentive scenario
check FILE`` validates a file (TOML or columnar) and prints a summary (exit 2 with the file
and field named when it is malformed); ``incentive scenario convert SOURCE TARGET``
converts between TOML and the columnar Parquet format (``docs/market.md``).

Cheap to import: the market package is imported inside the functions.
"""
from __future__ import annotations

import argparse

from incentive import args as types
from incentive.args import no_action as _no_action


def register(subparsers) -> None:
    """Add the ``scenario`` parser with its ``new``, ``check`` and ``convert`` sub-commands."""
    p = subparsers.add_parser("scenario", help="create or check scenario files",
                              description="Create (new) or validate (check) market scenario files.")
    sub = p.add_subparsers(dest="scenario_command", metavar="ACTION")
    new = sub.add_parser("new", help="write a seeded random scenario")
    new.add_argument("--asps", type=types.count(1, 100_000), required=True, help="number of ASPs (>= 1)")
    new.add_argument("--mus", type=types.count(1, 10_000_000), required=True, help="number of MUs (>= 1)")
    new.add_argument("--seed", type=types.seed, default=0, help="random seed (>= 0)")
    new.add_argument("--out", default=None, help="output file (default: print TOML to stdout); "
                                                  "NAME.parquet writes the columnar format")
    new.add_argument("--format", choices=("toml", "parquet"), default=None,
                     help="file format (default: from the --out suffix, else toml); parquet is drawn "
                          "column-wise (fast at 10^6 MUs; not the same draw as toml for a seed)")
    new.add_argument("--name", default=None, help="scenario name")
    new.add_argument("--bandwidth-model", choices=("linear", "shannon"), default="linear")
    new.add_argument("--asp-cost", choices=("linear", "quadratic"), default="linear")
    new.set_defaults(func=run_new)
    check = sub.add_parser("check", help="validate a scenario file")
    check.add_argument("file", help="scenario TOML file or columnar NAME.parquet folder")
    check.set_defaults(func=run_check)
    convert = sub.add_parser("convert", help="convert a scenario between TOML and columnar Parquet")
    convert.add_argument("source", help="scenario TOML file or NAME.parquet folder")
    convert.add_argument("target", help="new file: NAME.toml or NAME.parquet (an existing one is not overwritten)")
    convert.set_defaults(func=run_convert)
    p.set_defaults(func=lambda args: _no_action("scenario", ("new", "check", "convert")))


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
    fmt = args.format or ("parquet" if args.out and args.out.endswith(".parquet") else "toml")
    if fmt == "parquet":
        from market.columnar import write_columnar
        from market.generator import generate_columnar

        if not args.out:
            raise UserError("--format parquet needs --out NAME.parquet (a folder of Parquet files)")
        columnar = generate_columnar(args.asps, args.mus, args.seed, name=args.name,
                                     bandwidth_model=args.bandwidth_model, asp_cost=args.asp_cost)
        write_columnar(columnar, args.out)
        print(f"wrote {args.out}: {args.asps} ASPs, {args.mus} MUs, seed {args.seed} (columnar)")
        return 0
    scenario = generate_scenario(args.asps, args.mus, args.seed, name=args.name,
                                 bandwidth_model=args.bandwidth_model, asp_cost=args.asp_cost)
    if args.out:
        write_scenario(scenario, args.out)
        print(f"wrote {args.out}: {args.asps} ASPs, {args.mus} MUs, seed {args.seed}")
    else:
        import tomli_w

        print(tomli_w.dumps(scenario.to_dict()), end="")
    return 0


def _load_any(path: str):
    """A scenario from either format: (object scenario or None, columnar scenario or None)."""
    from market.columnar import is_columnar, load_columnar
    from market.scenario import load_scenario

    if is_columnar(path):
        return None, load_columnar(path)
    return load_scenario(path), None


def run_check(args: argparse.Namespace) -> int:
    """Validate a scenario file and print a summary."""
    from market.model import Market

    scenario, columnar = _load_any(args.file)
    market = columnar.to_market() if columnar is not None else Market.from_scenario(scenario)
    tables = (columnar or scenario).extra_tables
    extra = f"; extra tables: {', '.join(tables)}" if tables else ""
    kind = "columnar" if columnar is not None else "toml"
    version = (columnar or scenario).market.version
    print(f"{args.file}: ok ({kind}, format version {version}): {market.n_asps} ASPs, {market.n_mus} MUs, "
          f"bandwidth_model={market.bandwidth_model}, asp_cost={market.asp_cost}{extra}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Convert between TOML and columnar Parquet (validating on the way in and out)."""
    from pathlib import Path

    from market.columnar import ColumnarScenario, write_columnar
    from market.errors import UserError
    from market.scenario import write_scenario

    target = Path(args.target)
    if target.suffix not in (".toml", ".parquet"):
        raise UserError(f"convert: the target must end in .toml or .parquet, got {args.target!r}")
    if target.exists():
        raise UserError(f"convert: {target} exists; remove it or choose another name (nothing is overwritten)")
    scenario, columnar = _load_any(args.source)
    if target.suffix == ".parquet":
        write_columnar(columnar or ColumnarScenario.from_scenario(scenario), target)
    else:
        write_scenario(scenario or columnar.to_scenario(), target)
    n = columnar.n_mus if columnar is not None else len(scenario.mus)
    print(f"wrote {target} ({n} MUs) from {args.source}")
    return 0
