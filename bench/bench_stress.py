"""Speed of ``incentive stress`` per step, as ratios to one plain solve measured in the same run.

Runs the stress steps (``incentive.stress.run_stress``: reference solve, uniqueness probe with
K starts, sensitivity, robustness with N draws) on ``scenarios/default.toml`` and on the
shipped 20 x 1,000 market ``scenarios/large.toml`` with K = 32 and N = 256 (process pool of
``--workers`` processes), then writes the report folder. Prints for each: wall time per step
and its ratio to the reference, one plain certified solve of the same scenario
(``solvers.solve``, median of 5) timed in the same run; and per solve inside the probe and the
draws (step time x workers / solves), whose ratio to the reference shows the pool's overhead.

Run: ``.venv/bin/python bench/bench_stress.py [--quick] [--workers W]`` (``--quick``: the
default scenario only, K = 8, N = 32).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import solvers  # noqa: E402
from incentive.stress import StressConfig, run_stress, write_report  # noqa: E402
from market.scenario import load_scenario  # noqa: E402


def plain_solve_seconds(path: Path, repeats: int = 5) -> float:
    """Median wall time of one certified solve of the scenario (the reference)."""
    scenario = load_scenario(path)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = solvers.solve(scenario)
        times.append(time.perf_counter() - start)
        assert result.status == "converged", result.status
    return statistics.median(times)


def bench(path: Path, starts: int, samples: int, workers: int) -> None:
    reference = plain_solve_seconds(path)
    config = StressConfig(scenario=str(path), starts=starts, samples=samples,
                          perturb={"compute_capacity": 0.2, "weights": 0.05}, workers=workers)
    began = time.perf_counter()
    report = run_stress(config, show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_report(report, Path(tmp) / "report")
        report.seconds["write_report"] = time.perf_counter() - start
    total = time.perf_counter() - began
    scn = report.scenario
    print(f"\n{path.name}: {len(scn.asps)} ASPs x {len(scn.mus)} MUs, K={starts} starts, N={samples} draws, "
          f"{workers} workers")
    print(f"  reference: one plain certified solve {reference:.4f} s (median of 5)")
    print(f"  {'step':18s} {'seconds':>9s} {'x reference':>12s} {'per solve x ref':>16s}")
    solves = {"uniqueness": starts, "robustness": samples, "reference_solve": 1}
    for step, seconds in report.seconds.items():
        per = f"{seconds * workers / solves[step] / reference:16.2f}" if step in ("uniqueness", "robustness") else ""
        print(f"  {step:18s} {seconds:9.3f} {seconds / reference:12.1f} {per}")
    print(f"  {'total':18s} {total:9.3f} {total / reference:12.1f}")
    probe, sens, rob = report.probe, report.sensitivity, report.robustness
    print(f"  uniqueness: {probe.summary().splitlines()[0]}")
    if sens is not None:
        n_one = int((sens.method == 'one-sided').sum())
        print(f"  sensitivity: {len(sens.parameters)} parameters ({n_one} one-sided at a kink)")
    print(f"  robustness: {100 * rob.certified_fraction:.1f}% of draws certified")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="default scenario only, K=8, N=32")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        bench(ROOT / "scenarios" / "default.toml", 8, 32, args.workers)
        return
    bench(ROOT / "scenarios" / "default.toml", 32, 256, args.workers)
    bench(ROOT / "scenarios" / "large.toml", 32, 256, args.workers)


if __name__ == "__main__":
    main()
