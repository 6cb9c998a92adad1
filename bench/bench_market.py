"""Speed of the market solvers and certificate (issue 2's goals), with same-run references.

Goal: 20 ASPs x 1,000 MUs certified in at most 1 s of solver time on one core, and the whole
``incentive solve`` command within 5 s. Also 100 x 10,000. Prints, per size: solver time,
certificate time, iterations and status for each solver, the whole-CLI wall time, and ratios
against references measured in the same run:

* dual-perturbation vs the implicit-gradient oracle (exact derivatives, same driver);
* one round of vectorised deviation evaluations (3 per MU) vs a naive loop that re-solves
  every ASP's follower problem for each perturbed MU (what a non-vectorised dual
  perturbation would do; timed on a sample of MUs and scaled).

Run: ``.venv/bin/python bench/bench_market.py [--quick]`` (``--quick``: 20 x 1,000 only).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, as the goal says

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from market.followers import closed_form_response  # noqa: E402
from market.generator import generate_scenario  # noqa: E402
from market.leaders import deviation_utility  # noqa: E402
from market.model import Market  # noqa: E402
from market.scenario import write_scenario  # noqa: E402
from solvers import solve  # noqa: E402

SIZES = [(20, 1000), (100, 10000)]
SOLVERS = ["dual-perturbation", "dual-perturbation-jacobi", "implicit-gradient"]


def naive_round_time(market: Market, rewards: np.ndarray, sample: int = 200) -> float:
    """Seconds for one round of 3 deviations per MU by full follower re-solves, per MU loop."""
    lo, hi = market.reward_min, market.reward_max
    pert = 1e-3 * (hi - lo)
    picks = np.linspace(0, market.n_mus - 1, min(sample, market.n_mus)).astype(int)
    start = time.perf_counter()
    for m in picks:
        for t in (rewards[m] - pert[m], rewards[m], rewards[m] + pert[m]):
            trial = rewards.copy()
            trial[m] = t
            closed_form_response(market, trial)
    return (time.perf_counter() - start) * market.n_mus / picks.size


def vector_round_time(market: Market, rewards: np.ndarray, repeats: int = 20) -> float:
    lo, hi = market.reward_min, market.reward_max
    pert = 1e-3 * (hi - lo)
    points = np.stack([rewards - pert, rewards, rewards + pert], axis=1)
    start = time.perf_counter()
    for _ in range(repeats):
        deviation_utility(market, rewards, points)
    return (time.perf_counter() - start) / repeats


def cli_time(market_file: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "incentive", "solve", str(market_file), "--quiet", "--out",
                           str(market_file.with_suffix(".json"))], cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 x 1,000 only")
    args = parser.parse_args()
    sizes = SIZES[:1] if args.quick else SIZES
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for n_asps, n_mus in sizes:
            t0 = time.perf_counter()
            scn = generate_scenario(n_asps, n_mus, seed=2026)
            market = Market.from_scenario(scn)
            build = time.perf_counter() - t0
            print(f"\n== {n_asps} ASPs x {n_mus} MUs (scenario generated and built in {build:.2f} s)")
            print(f"{'solver':26s} {'status':14s} {'iters':>6s} {'solve_s':>8s} {'cert_s':>8s} "
                  f"{'max_rel_regret':>14s} {'kkt':>9s}  schedule")
            times = {}
            answer = None
            for name in SOLVERS:
                res = solve(market, name)
                times[name] = res.solve_time_s
                answer = res.rewards if answer is None else answer
                c = res.certificate
                print(f"{name:26s} {res.status:14s} {res.iterations:6d} {res.solve_time_s:8.3f} "
                      f"{res.certificate_time_s:8.3f} {c.max_relative_regret:14.2e} {c.kkt_residual:9.1e}  "
                      f"{res.options.get('schedule_used', '')}")
                if name == "dual-perturbation" and (n_asps, n_mus) == (20, 1000):
                    goal = res.status == "converged" and res.solve_time_s <= 1.0
                    ok &= goal
                    print(f"   goal (certified, solver <= 1 s): {'MET' if goal else 'NOT MET'}")
            print(f"ratio dual-perturbation / implicit-gradient solve time: "
                  f"{times['dual-perturbation'] / times['implicit-gradient']:.2f}")
            naive = naive_round_time(market, answer)
            vector = vector_round_time(market, answer)
            print(f"one round of 3 deviations per MU: vectorised {vector * 1e3:.2f} ms, naive per-MU re-solve "
                  f"{naive * 1e3:.0f} ms (estimated from a sample) -> speed-up {naive / vector:.0f}x")
            file = Path(tmp) / f"bench_{n_asps}x{n_mus}.toml"
            write_scenario(scn, file)
            wall, code = cli_time(file)
            line = f"whole `incentive solve` (process start, load, solve, certify, write JSON): {wall:.2f} s, exit {code}"
            if (n_asps, n_mus) == (20, 1000):
                goal = wall <= 5.0 and code == 0
                ok &= goal
                line += f" -> goal (<= 5 s): {'MET' if goal else 'NOT MET'}"
            print(line)
    print("\nall goals met" if ok else "\nsome goals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
