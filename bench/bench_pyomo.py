"""Speed of the Pyomo/Ipopt reference solver against the default solver, as a ratio.

Both solve the same generated scenarios (``market.generator``, seed 0) and are timed in
the same run; the ratio is reference time / default time (solver time only, certificate
excluded). Sizes run from 3 ASPs x 12 MUs upwards; by default the script stops at 10 x 40
(about a minute in all on one core); ``--sizes`` adds larger ones (20 x 80 takes the
reference about a minute by itself).

    .venv/bin/python bench/bench_pyomo.py [--sizes 3x12 6x24 10x40 20x80] [--method auto|joint|gauss-seidel]

Prints a note and exits 0 when no ipopt executable is available.

May import: everything.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _kinks(market, rewards, rel=1e-3) -> list[str]:
    """Capacities whose demand price equals the unit cost (where the equilibrium may be a continuum)."""
    import numpy as np

    out = []
    for name, need, cap, cost in (("compute", market.timeliness_compute_need, market.compute_capacity,
                                   market.compute_cost),
                                  ("bandwidth", market.timeliness_bandwidth_need, market.bandwidth_capacity,
                                   market.bandwidth_cost)):
        price = (market.per_asp_sum(np.sqrt(need * rewards)) / cap) ** 2
        out += [f"{market.asp_names[n]}.{name}" for n in np.flatnonzero(np.abs(price / np.maximum(cost, 1e-300) - 1) < rel)]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["3x12", "6x24", "10x40"], help="ASPsxMUs sizes")
    parser.add_argument("--method", default="auto", choices=("auto", "joint", "gauss-seidel"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from market.generator import generate_scenario
    from market.model import Market
    from solvers import solve
    from solvers.pyomo_reference import ipopt_unavailable_reason

    reason = ipopt_unavailable_reason()
    if reason:
        print(f"bench_pyomo: skipped ({reason})")
        return 0
    print(f"{'size':>8} {'default s':>10} {'pyomo s':>9} {'ratio':>8} {'ipopt runs':>10} {'s/run':>7} "
          f"{'max |dr|/r':>10}  status (default / pyomo); capacities at the slack/binding kink")
    for size in args.sizes:
        n_asps, n_mus = (int(x) for x in size.lower().split("x"))
        market = Market.from_scenario(generate_scenario(n_asps, n_mus, args.seed))
        default = solve(market, "dual-perturbation")
        start = time.perf_counter()
        reference = solve(market, "pyomo", method=args.method)
        wall = time.perf_counter() - start
        runs = reference.options.get("ipopt_solves", 0)
        diff = float(max(abs(reference.rewards - default.rewards) / default.rewards))
        ratio = reference.solve_time_s / max(default.solve_time_s, 1e-9)
        print(f"{size:>8} {default.solve_time_s:10.4f} {reference.solve_time_s:9.2f} {ratio:8.0f} {runs:10d} "
              f"{reference.options.get('ipopt_seconds', wall) / max(runs, 1):7.3f} {diff:10.2e}  "
              f"{default.status} / {reference.status}; {', '.join(_kinks(market, default.rewards)) or '-'}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
