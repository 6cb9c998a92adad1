"""The market at scale (issue 14): phases, peak memory, batched and sharded solves, as ratios.

Every figure is set against a reference measured in the same run, on the same machine:
the lower bound of one solver round, ``round_lb``: the per-ASP sums and one 3-point stencil
of closed-form deviation utilities for every MU (the work a Jacobi round of the dual
perturbation cannot avoid; the fastest of 5 runs). Per size (20 ASPs; ``--wide`` adds
20,000 ASPs x 10^6 MUs), in a fresh child process:

* phases of a columnar ``incentive solve``: parse (Parquet -> Arrow), validate (column-wise
  rules), build (numpy market), solve, certificate, write (result Parquet tables + summary),
  each in CPU seconds and as a multiple of ``round_lb``; the solve also against
  ``rounds x round_lb`` (the goal: within 10x at 10^6);
* the peak resident memory of that child (goal: 2 GB at 10^6);
* the whole command ``incentive solve X.parquet --out DIR`` as a subprocess: CPU seconds
  (user + sys, from ``wait4``) and its peak memory (goal: 30 s of CPU at 10^6, 5 s at 10^5).

Then ``--batched``: 10^4 generated 3 x 12 markets in one call (numpy and torch backends;
goal 10 s of CPU), and ``--ray``: a 10^6 market's solve and certificate on a local Ray cluster
with 1 and 2 workers (goal: 2 workers >= 1.6x), with the per-MU shard cost projected to 10^7
and 10^8 MUs.

Run: ``.venv/bin/python bench/bench_market.py [--sizes 1000,10000,100000,1000000] [--wide]
[--batched] [--ray] [--json FILE]``. One thread (OMP/BLAS = 1) unless told otherwise.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu() -> float:
    """CPU seconds of this process (user + sys)."""
    return time.process_time()


def peak_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def round_lower_bound(market, rewards, repeats: int = 5) -> float:
    """CPU seconds of one Jacobi round's unavoidable work (fastest of ``repeats``)."""
    from market.followers import DeviationSums
    from market.leaders import deviation_utility

    pert = 1e-3 * (market.reward_max - market.reward_min)
    stencil = np.stack([rewards - pert, rewards, rewards + pert], axis=1)
    best = np.inf
    for _ in range(repeats):
        start = cpu()
        sums = DeviationSums(market, rewards)
        deviation_utility(market, rewards, stencil, sums=sums)
        best = min(best, cpu() - start)
    return best


def phases_child(folder: str, out: str) -> dict:
    """Run in a fresh process: time each phase of a columnar solve of ``folder``."""
    from market.columnar import ASP_FILE, MU_FILE, _read, _validated, write_result_tables
    from market.scenario import parse_market_table
    from solvers.registry import solve

    figures = {}
    start = cpu()
    asp_table, mu_table = _read(Path(folder) / ASP_FILE), _read(Path(folder) / MU_FILE)
    figures["parse_s"] = cpu() - start
    start = cpu()
    meta = {k.decode(): v.decode() for k, v in asp_table.schema.metadata.items()}
    config = parse_market_table(json.loads(meta["aigc.market"]), folder)
    columnar = _validated(config, asp_table, mu_table, folder, folder, {}, folder)
    del asp_table, mu_table
    figures["validate_s"] = cpu() - start
    start = cpu()
    market = columnar.to_market()
    figures["build_s"] = cpu() - start
    start = cpu()
    result = solve(market)
    figures["solve_and_certificate_s"] = cpu() - start
    figures["solve_wall_s"], figures["certificate_wall_s"] = result.solve_time_s, result.certificate_time_s
    share = result.solve_time_s / max(result.solve_time_s + result.certificate_time_s, 1e-12)
    figures["solve_s"] = figures["solve_and_certificate_s"] * share
    figures["certificate_s"] = figures["solve_and_certificate_s"] * (1 - share)
    figures["rounds"] = result.iterations
    figures["status"] = result.status
    figures["max_relative_regret"] = result.certificate.max_relative_regret
    figures["max_relative_reward_distance"] = result.certificate.max_relative_reward_distance
    start = cpu()
    Path(out).mkdir(parents=True, exist_ok=True)
    mus, asps = result.to_columns()
    write_result_tables(out, mus, asps)
    summary = result.to_dict(max_rows=0)
    (Path(out) / "summary.json").write_text(json.dumps(summary, default=str))
    figures["write_s"] = cpu() - start
    figures["round_lb_s"] = round_lower_bound(market, result.rewards)
    figures["peak_mb"] = peak_mb()
    return figures


def run_child(args: list[str]) -> tuple[dict | None, float, float, int]:
    """Run ``python bench_market.py --child ...``; returns (its JSON, CPU s, peak MB, exit code)."""
    proc = subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    data = None
    for line in out.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
    return data, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, proc.returncode


def whole_command(folder: Path, out: Path) -> tuple[float, float, int]:
    """CPU seconds, peak MB and exit code of ``incentive solve folder --out out --quiet``."""
    proc = subprocess.Popen([sys.executable, "-m", "incentive", "solve", str(folder), "--out", str(out), "--quiet"],
                            cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status)


def bench_size(tmp: Path, n_asps: int, n_mus: int, seed: int = 2026) -> dict:
    from market.columnar import write_columnar
    from market.generator import generate_columnar

    folder = tmp / f"m{n_asps}x{n_mus}.parquet"
    write_columnar(generate_columnar(n_asps, n_mus, seed), folder)
    figures, _, child_peak, code = run_child(["--child", str(folder), str(tmp / f"out-{n_asps}x{n_mus}")])
    if figures is None:
        return {"n_asps": n_asps, "n_mus": n_mus, "error": f"child exited {code}"}
    figures["child_peak_mb"] = child_peak
    cli_cpu, cli_peak, cli_code = whole_command(folder, tmp / f"cli-{n_asps}x{n_mus}")
    figures.update(n_asps=n_asps, n_mus=n_mus, command_cpu_s=cli_cpu, command_peak_mb=cli_peak,
                   command_exit=cli_code)
    return figures


def print_size(f: dict) -> None:
    if "error" in f:
        print(f"{f['n_asps']:>6d} x {f['n_mus']:>8d}: {f['error']}")
        return
    lb = f["round_lb_s"]
    ratio = lambda k: f[k] / lb  # noqa: E731
    print(f"{f['n_asps']:>6d} x {f['n_mus']:>8d} | round_lb {lb * 1e3:8.2f} ms | "
          f"parse {f['parse_s']:6.2f} s ({ratio('parse_s'):6.0f}x) validate {f['validate_s']:6.2f} s "
          f"({ratio('validate_s'):5.0f}x) build {f['build_s']:5.2f} s solve {f['solve_s']:6.2f} s "
          f"({ratio('solve_s'):6.0f}x; {f['solve_s'] / (f['rounds'] * lb):5.1f}x of {f['rounds']} rounds) "
          f"certificate {f['certificate_s']:6.2f} s ({ratio('certificate_s'):6.0f}x) write {f['write_s']:5.2f} s "
          f"({ratio('write_s'):5.0f}x) | peak {f['child_peak_mb']:7.0f} MB | {f['status']} "
          f"regret {f['max_relative_regret']:.1e} dist {f['max_relative_reward_distance']:.1e} | "
          f"whole command {f['command_cpu_s']:6.2f} CPU s, {f['command_peak_mb']:7.0f} MB, exit {f['command_exit']}")


def bench_batched(k: int = 10_000) -> dict:
    from market.generator import generate_scenario
    from market.model import Market
    from solvers.batched import solve_batch

    start = time.perf_counter()
    markets = [Market.from_scenario(generate_scenario(3, 12, seed)) for seed in range(k)]
    out = {"k": k, "generate_s": time.perf_counter() - start}
    for backend in ("numpy", "torch"):
        try:
            start = cpu()
            batch = solve_batch(markets, backend=backend)
        except Exception as exc:  # noqa: BLE001 - a missing torch is reported, not fatal
            out[backend] = {"error": str(exc)}
            continue
        out[backend] = {"cpu_s": cpu() - start, "solve_s": batch.solve_time_s, "certificate_s": batch.certificate_time_s,
                        "passed": float(batch.passed.mean()), "max_relative_regret": float(batch.max_relative_regret.max()),
                        "sweeps": batch.iterations, "backend": batch.backend, "resolved_alone": len(batch.resolved),
                        "passed_by_the_batch_itself": float(1 - len(batch.resolved) / k)}
    return out


def bench_ray(tmp: Path, n_mus: int = 1_000_000, n_asps: int = 20) -> dict:
    from market.columnar import write_columnar
    from market.generator import generate_columnar
    from solvers.decomposition import solve_sharded

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    folder = tmp / f"ray{n_asps}x{n_mus}.parquet"
    if not folder.exists():
        write_columnar(generate_columnar(n_asps, n_mus, 7), folder)
    out = {"n_mus": n_mus, "n_asps": n_asps}
    for workers in (1, 2):
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            start = time.perf_counter()
            result = solve_sharded(folder, shards=4, executor="ray", workers=workers)
            wall = time.perf_counter() - start
        finally:
            ray.shutdown()
        shard_cpu = sum(s.read_s + s.solve_s + s.certificate_s for s in result.shards)
        out[f"workers_{workers}"] = {"wall_s": wall, "shard_work_s": shard_cpu, "passed": result.passed,
                                     "plan_s": result.plan_s,
                                     "per_mu_us": 1e6 * shard_cpu / n_mus}
    out["speedup"] = out["workers_1"]["wall_s"] / out["workers_2"]["wall_s"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000", help="MU counts (20 ASPs each)")
    parser.add_argument("--wide", action="store_true", help="also 20,000 ASPs x 10^6 MUs")
    parser.add_argument("--batched", action="store_true", help="10^4 batched 3 x 12 markets")
    parser.add_argument("--ray", action="store_true", help="1 vs 2 Ray workers on a 10^6 market")
    parser.add_argument("--ray-mus", type=int, default=1_000_000)
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(phases_child(*args.child)))
        return 0
    report: dict = {"sizes": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sizes = [(20, int(s)) for s in args.sizes.split(",") if s] + ([(20_000, 1_000_000)] if args.wide else [])
        for n_asps, n_mus in sizes:
            figures = bench_size(tmp, n_asps, n_mus)
            report["sizes"].append(figures)
            print_size(figures)
            sys.stdout.flush()
        if args.batched:
            report["batched"] = b = bench_batched()
            print(f"batched: {b['k']} markets of 3 x 12 (generated in {b['generate_s']:.1f} s): "
                  + "; ".join(f"{k} {v}" for k, v in b.items() if k in ("numpy", "torch")))
        if args.ray:
            report["ray"] = r = bench_ray(tmp, args.ray_mus)
            print(f"ray, {r['n_mus']} MUs x {r['n_asps']} ASPs in 4 shards: 1 worker {r['workers_1']['wall_s']:.1f} s, "
                  f"2 workers {r['workers_2']['wall_s']:.1f} s -> {r['speedup']:.2f}x; shard work "
                  f"{r['workers_1']['per_mu_us']:.1f} us per MU -> 10^7 MUs {r['workers_1']['per_mu_us'] * 10:.0f} "
                  f"core-s, 10^8 MUs {r['workers_1']['per_mu_us'] * 100:.0f} core-s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
