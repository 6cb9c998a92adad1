"""``incentive solve``: solve a market scenario, certify the equilibrium, print and save it.

Usage: ``incentive solve SCENARIO [--solver NAME] [--out result.json] [--quiet] [--json]
[--tolerance T] [--max-iterations N]``. Prints a table (per MU: reward, compute,
bandwidth, latency, QoE and its parts, payment, utility, regret; per ASP: prices, use of
capacity, profit; the certificate) and writes the result JSON (``docs/market.md``)
atomically. Exit code 0 when the certificate passes, 1 when it does not, 2 on bad input.

Cheap to import: numpy, cvxpy and the solvers are imported inside :func:`run`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from incentive import args as types


def register(subparsers) -> None:
    """Add the ``solve`` parser."""
    p = subparsers.add_parser("solve", help="solve a market scenario and certify the equilibrium",
                              description="Solve a market scenario and certify the equilibrium.")
    p.add_argument("scenario", nargs="?",
                   help="scenario: a TOML file, or a columnar NAME.parquet folder (see docs/market.md)")
    p.add_argument("--solver", default=None,
                   help="solver name (default: the scenario's [market] solver, normally dual-perturbation); "
                        "see `incentive solve --list-solvers`")
    p.add_argument("--out", default=None,
                   help="TOML scenario: write the result JSON here (atomically); columnar scenario: a folder "
                        "that receives summary.json, mus.parquet and asps.parquet (appears whole or not at all)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors (and --json output)")
    p.add_argument("--json", action="store_true", help="print the result JSON to stdout instead of the table")
    p.add_argument("--tolerance", type=types.number(1e-15, 0.5), default=None,
                   help="certificate tolerance, relative, in [1e-15, 0.5] (default 1e-6)")
    p.add_argument("--max-iterations", type=types.count(1, 10**7), default=None, help="iteration limit of the solver")
    p.add_argument("--list-solvers", action="store_true", help="list the registered solvers and exit")
    p.add_argument("--executor", choices=("serial", "process", "ray"), default=None,
                   help="columnar scenarios: solve and certify shard by shard (groups of ASPs; the game splits "
                        "by ASP) on this executor; each worker reads its own shard and writes its part files")
    p.add_argument("--workers", type=int, default=2, help="parallel workers for --executor (default 2)")
    p.add_argument("--shards", type=int, default=None, help="number of shards (default: --workers)")
    p.add_argument("--overwrite", action="store_true",
                   help="columnar --out folder: replace an existing non-empty folder (never done without it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    from market.errors import UserError
    from market.scenario import load_scenario, market_table
    from solvers.registry import REGISTRY, solve

    if args.list_solvers:
        for name, spec in sorted(REGISTRY.items()):
            print(f"{name:28s} {spec.description}")
        return 0
    if not args.scenario:
        raise UserError("incentive solve: give a scenario file (e.g. scenarios/default.toml)")
    from market.columnar import is_columnar

    args.out_plan = None
    if args.out is not None:  # before solving: a bad path must not cost the result
        from incentive.outdir import check_output_dir, check_output_file

        if is_columnar(args.scenario):
            identity = {"scenario": os.path.abspath(args.scenario), "solver": args.solver,
                        "tolerance": args.tolerance, "executor": args.executor}
            args.out_plan = check_output_dir(args.out, command="solve", identity=identity,
                                             overwrite=getattr(args, "overwrite", False))
        else:
            check_output_file(args.out)
    started = time.perf_counter()

    if args.executor is not None:
        if not is_columnar(args.scenario):
            raise UserError("--executor needs a columnar scenario (NAME.parquet; see `incentive scenario convert`)")
        return _run_sharded(args, started)
    if is_columnar(args.scenario):
        return _run_columnar(args, started)
    scenario = load_scenario(args.scenario)
    solver = _chosen_solver(args, scenario.market.solver)
    result = solve(scenario, solver, tolerance=args.tolerance, max_iterations=args.max_iterations,
                   **_progress_options(args, solver))
    data = result.to_dict()
    data["scenario_file"] = str(args.scenario)
    data["scenario_config"] = market_table(scenario.market)
    data["command_time_s"] = time.perf_counter() - started
    from market.atomic import json_ready

    data = json_ready(data)  # an unbounded certificate entry (inf KKT residual of a failed solve) is null
    if args.out:
        from market.atomic import atomic_write_json

        try:
            atomic_write_json(args.out, data)
        except OSError as exc:
            if not args.quiet and not args.json:
                print(format_result(result))
            raise UserError(f"--out {args.out}: could not write the result ({exc.strerror or exc}); "
                            "the table above is all that was kept") from None
    try:
        if args.json:
            print(json.dumps(data, indent=2, allow_nan=False))
        elif not args.quiet:
            print(format_result(result))
            if args.out:
                print(f"result written to {args.out}")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `incentive solve ... | head`: the result file is already written
        sys.stdout = open(os.devnull, "w")
    return 0 if result.status == "converged" else 1


def _chosen_solver(args: argparse.Namespace, scenario_solver: str) -> str:
    """``--solver`` or the scenario's ``[market] solver``; an unknown name is a one-line error
    naming the flag or the scenario's field."""
    from market.errors import ScenarioError, UserError
    from solvers.registry import REGISTRY

    solver = args.solver or scenario_solver
    if solver not in REGISTRY:
        message = f"unknown solver {solver!r}; available: {', '.join(sorted(REGISTRY))}"
        if args.solver is None:
            raise ScenarioError(message, file=args.scenario, field="market.solver")
        raise UserError(f"--solver: {message}")
    return solver


def _progress_options(args: argparse.Namespace, solver: str) -> dict:
    """A progress printer for our own iterative solvers when the output is a table."""
    from solvers.registry import REGISTRY

    spec = REGISTRY[solver]
    if spec.module.startswith("solvers.") and spec.name != "pyomo" and not args.quiet and not args.json:
        return {"progress": _progress_printer()}
    return {}


def _run_columnar(args: argparse.Namespace, started: float) -> int:
    """``incentive solve NAME.parquet [--out DIR]``: columns in, columns out, a JSON summary."""
    from market.columnar import load_columnar, write_result_tables
    from market.scenario import market_table
    from solvers.registry import solve

    phases = {}
    tick = time.perf_counter()
    columnar = load_columnar(args.scenario)
    phases["parse_validate_s"] = time.perf_counter() - tick
    solver = _chosen_solver(args, columnar.market.solver)
    tick = time.perf_counter()
    market = columnar.to_market()
    phases["build_s"] = time.perf_counter() - tick
    result = solve(market, solver, tolerance=args.tolerance, max_iterations=args.max_iterations,
                   **_progress_options(args, solver))
    phases["solve_s"], phases["certificate_s"] = result.solve_time_s, result.certificate_time_s
    summary = result.to_dict(max_rows=0)
    del summary["mus"], summary["asps"]
    summary.update({"format": "columnar", "n_mus": market.n_mus, "n_asps": market.n_asps,
                    "scenario_file": str(args.scenario), "scenario_config": market_table(columnar.market)})
    if args.out:
        from incentive.outdir import staged_output_dir
        from market.atomic import atomic_write_json

        tick = time.perf_counter()
        with staged_output_dir(args.out_plan or args.out) as stage:
            mus, asps = result.to_columns()
            write_result_tables(stage, mus, asps, {"scenario": market.name})
            phases["write_tables_s"] = time.perf_counter() - tick
            summary["phases"] = phases
            summary["command_time_s"] = time.perf_counter() - started
            atomic_write_json(stage / "summary.json", summary)
    else:
        summary["phases"] = phases
        summary["command_time_s"] = time.perf_counter() - started
    try:
        if args.json:
            print(json.dumps(summary, indent=2, allow_nan=False, default=str))
        elif not args.quiet:
            print(format_result(result))
            if args.out:
                print(f"result written to {args.out}/ (summary.json, mus.parquet, asps.parquet)")
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")
    return 0 if result.status == "converged" else 1


def _run_sharded(args: argparse.Namespace, started: float) -> int:
    """``incentive solve NAME.parquet --executor E [--workers W] [--shards S] [--out DIR]``."""
    from market.errors import UserError
    from solvers.decomposition import solve_sharded

    if args.workers < 1 or (args.shards is not None and args.shards < 1):
        raise UserError("--workers and --shards must be at least 1")
    solver = args.solver or "dual-perturbation"
    shards = args.shards or args.workers

    def run(out):
        return solve_sharded(args.scenario, shards=shards, executor=args.executor, workers=args.workers, out=out,
                             solver=solver, tolerance=args.tolerance)

    if args.out:
        from incentive.outdir import staged_output_dir
        from market.atomic import atomic_write_json

        with staged_output_dir(args.out_plan or args.out) as stage:
            result = run(stage)
            summary = {"version": 1, "format": "columnar-sharded", "solver": solver,
                       "scenario_file": str(args.scenario), **result.summary(),
                       "command_time_s": time.perf_counter() - started}
            atomic_write_json(stage / "summary.json", summary)
    else:
        result = run(None)
        summary = {"version": 1, "format": "columnar-sharded", "solver": solver, "scenario_file": str(args.scenario),
                   **result.summary(), "command_time_s": time.perf_counter() - started}
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False, default=str))
    elif not args.quiet:
        c = summary["certificate"]
        print(f"{args.scenario}: {summary['n_mus']} MUs, {summary['n_asps']} ASPs in {len(result.shards)} shards on "
              f"{args.executor} x {args.workers}: status {summary['status'].upper()}, max relative regret "
              f"{c['max_relative_regret']:.2e}, KKT {c['kkt_residual']:.1e}, wall {result.wall_s:.2f} s"
              + (f"; written to {args.out}/ (summary.json, mus/, asps/)" if args.out else ""))
    return 0 if result.passed else 1


def _progress_printer():
    """A progress callback that prints at most once a second to stderr."""
    state = {"last": time.perf_counter()}

    def report(iteration: int, gain: float) -> None:
        now = time.perf_counter()
        if now - state["last"] >= 1.0:
            state["last"] = now
            print(f"  round {iteration}: largest predicted relative gain {gain:.3e}", file=sys.stderr)

    return report


def _fmt(x: float | None, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def format_result(result, max_rows: int = 40) -> str:
    """The readable table of a result (MUs, ASPs, certificate)."""
    d = result.to_dict(max_rows=max_rows + 1)
    n_mus, n_asps = result.market.n_mus, result.market.n_asps
    lines = [f"scenario {d['scenario']}: solver {d['solver']}, status {d['status'].upper()} "
             f"({d['iterations']} iterations, solve {d['solve_time_s']:.3f} s, "
             f"certificate {d['certificate_time_s']:.3f} s)"]
    if d["message"]:
        lines.append(f"  {d['message']}")
    if d["mus"]:
        head = (f"{'MU':18s} {'ASP':8s} {'reward':>9s} {'compute':>9s} {'bandwidth':>10s} {'latency_s':>9s} "
                f"{'QoE':>7s} {'acc':>6s} {'tok':>6s} {'time':>7s} {'payment':>9s} {'utility':>9s} {'regret':>9s}")
        lines += ["", head, "-" * len(head)]
        for row in d["mus"][:max_rows]:  # noqa: B007
            lines.append(
                f"{row['name'][:18]:18s} {row['asp'][:8]:8s} {_fmt(row['reward']):>9s} {_fmt(row['compute']):>9s} "
                f"{_fmt(row['bandwidth']):>10s} {_fmt(row['latency_s']):>9s} {_fmt(row['qoe'], '.4f'):>7s} "
                f"{_fmt(row['qoe_accuracy'], '.3f'):>6s} {_fmt(row['qoe_tokens'], '.3f'):>6s} "
                f"{_fmt(row['qoe_timeliness'], '.3f'):>7s} {_fmt(row['payment']):>9s} {_fmt(row['utility']):>9s} "
                f"{_fmt(row['regret'], '.2e'):>9s}")
        if n_mus > max_rows:
            lines.append(f"... {n_mus - max_rows} more MUs (all of them in the result file)")
        head = (f"{'ASP':8s} {'compute_price':>13s} {'bw_price':>10s} {'compute used':>16s} "
                f"{'bandwidth used':>20s} {'revenue':>9s} {'cost':>9s} {'profit':>9s}")
        lines += ["", head, "-" * len(head)]
        for row in d["asps"][:max_rows]:
            used_f = f"{row['compute_used']:.3g}/{row['compute_capacity']:.3g}"
            used_b = f"{row['bandwidth_used']:.3g}/{row['bandwidth_capacity']:.3g}"
            lines.append(f"{row['name'][:8]:8s} {_fmt(row['compute_price']):>13s} {_fmt(row['bandwidth_price']):>10s} "
                         f"{used_f:>16s} {used_b:>20s} {_fmt(row['revenue']):>9s} {_fmt(row['cost']):>9s} "
                         f"{_fmt(row['profit']):>9s}")
        if n_asps > max_rows:
            lines.append(f"... {n_asps - max_rows} more ASPs")
    c = d["certificate"]
    if c:
        lines += ["", f"certificate: {'PASSED' if c['passed'] else 'NOT PASSED'} at tolerance {c['tolerance']:.1e} "
                      f"(relative): KKT residual {c['kkt_residual']:.2e}, max relative regret "
                      f"{c['max_relative_regret']:.2e}, max regret {c['max_regret']:.3e}, NashConv {c['nashconv']:.3e}"]
        if c["floor_violation"] > 0:
            lines.append(f"  QoE floor missed by up to {c['floor_violation']:.3e}")
    return "\n".join(lines)
