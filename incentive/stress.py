"""The stress report of one scenario: uniqueness, sensitivity, robustness (``incentive stress``).

What this module is for: :func:`run_stress` runs the steps on typed records and
:func:`write_report` writes the report folder whole or not at all
(``incentive.outdir.staged_output_dir``):

1. load the scenario and solve it once (the reference equilibrium, certified);
2. uniqueness probe (``solvers.stress.probe_uniqueness``): K Sobol starts, clustered;
3. sensitivity (``solvers.sensitivity.equilibrium_sensitivity``): exact derivatives by the
   implicit function theorem, one-sided at kinks; ranked elasticities, tornado chart;
4. robustness (``solvers.stress.robustness``): N perturbed draws, percentiles, worst case
   written as a scenario file.

Files: ``report.md``, ``stress.json``, ``equilibrium.json`` (the reference result),
``uniqueness.csv``, ``sensitivity.csv`` (every parameter, ranked), ``sensitivity_full.npz``
(every per-MU/per-ASP derivative, sparse COO; skipped above :data:`FULL_NPZ_LIMIT`), ``tornado.png``, ``robustness.csv``,
``robustness.png``, ``worst_case.toml``. Plots use matplotlib's Agg backend.

May import: everything (``incentive`` is the top layer); nothing imports it.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from market.atomic import (atomic_write_bytes, atomic_write_json, atomic_write_png, atomic_write_text, csv_text,
                           headless_pyplot, json_ready)

#: Perturbation used when the user gives none (relative bounds).
DEFAULT_PERTURB = {"compute_capacity": 0.2, "bandwidth_capacity": 0.2}
#: Aggregates shown in the ranking and the tornado chart (money).
RANKED = ("welfare", "mu_utility_total", "asp_profit_total")
TORNADO_STEP = 0.1
TORNADO_ROWS = 15


@dataclass
class StressConfig:
    """What ``incentive stress`` was asked to do."""

    scenario: str
    """Path of the scenario file."""
    starts: int = 16
    """Starting points of the uniqueness probe (0: skip it)."""
    samples: int = 64
    """Robustness draws (0: skip it)."""
    perturb: dict = field(default_factory=lambda: dict(DEFAULT_PERTURB))
    """Field -> relative bound of the robustness draws."""
    seed: int = 0
    """Seed of the Sobol scrambling and of the draws."""
    solver: str | None = None
    """Solver (default: the scenario's)."""
    workers: int = 2
    """Processes of the pool."""
    sensitivity: bool = True
    """Run the sensitivity step."""
    worst_by: str = "welfare"
    """Outcome whose lowest value defines the worst draw."""


@dataclass
class StressReport:
    """Everything the steps found, with the time each took."""

    config: StressConfig
    scenario: object
    """The loaded ``market.scenario.Scenario``."""
    result: object
    """The reference equilibrium (``solvers.EquilibriumResult``)."""
    probe: object = None
    """``solvers.stress.UniquenessProbe`` or None."""
    sensitivity: object = None
    """``solvers.sensitivity.Sensitivity`` or None."""
    sensitivity_error: str = ""
    """Why the sensitivity step was not run (empty when it was)."""
    robustness: object = None
    """``solvers.stress.Robustness`` or None."""
    seconds: dict = field(default_factory=dict)
    """Step -> wall time (s)."""


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)


def run_stress(config: StressConfig, *, show_progress: bool = True) -> StressReport:
    """Run the four steps of the module docstring and return their records."""
    import solvers
    from market.scenario import load_scenario
    from solvers.sensitivity import equilibrium_sensitivity
    from solvers.stress import probe_uniqueness, robustness

    began = time.perf_counter()
    scenario = load_scenario(config.scenario)
    solver = config.solver or scenario.market.solver
    result = solvers.solve(scenario, solver)
    report = StressReport(config=config, scenario=scenario, result=result)
    report.seconds["reference_solve"] = time.perf_counter() - began
    if config.starts > 0:
        began = time.perf_counter()
        with _bar(config.starts, "uniqueness: starts", show_progress) as bar:
            report.probe = probe_uniqueness(scenario, starts=config.starts, seed=config.seed, solver=solver,
                                            workers=config.workers, progress=lambda: bar.update())
        report.seconds["uniqueness"] = time.perf_counter() - began
    if config.sensitivity:
        began = time.perf_counter()
        if result.status != "converged":
            report.sensitivity_error = "the reference equilibrium is not certified"
        else:
            from solvers.sensitivity import scenario_parameters

            with _bar(len(scenario_parameters(scenario)), "sensitivity: parameters", show_progress) as bar:
                try:
                    report.sensitivity = equilibrium_sensitivity(scenario, result.rewards, progress=bar.update)
                except NotImplementedError as exc:
                    report.sensitivity_error = str(exc)
        report.seconds["sensitivity"] = time.perf_counter() - began
    if config.samples > 0:
        began = time.perf_counter()
        from solvers.stress import outcomes

        baseline = outcomes(result) if result.certificate is not None else {}
        with _bar(config.samples, "robustness: draws", show_progress) as bar:
            report.robustness = robustness(scenario, config.perturb, samples=config.samples, seed=config.seed,
                                           solver=solver, workers=config.workers, worst_by=config.worst_by,
                                           baseline=baseline, progress=lambda: bar.update())
        report.seconds["robustness"] = time.perf_counter() - began
    return report


# ============================================================================ sensitivity tables
def ranked_sensitivity(sens) -> list[dict]:
    """One row per parameter: derivative and elasticity of each aggregate (left/right), ranked
    by the largest |elasticity| of :data:`RANKED`. Elasticities are NaN where the parameter is 0."""
    left_d, right_d = sens.aggregate("left"), sens.aggregate("right")
    left_e, right_e = sens.elasticities("left"), sens.elasticities("right")
    rows = []
    for j, p in enumerate(sens.parameters):
        row = {"parameter": p.name, "label": p.label, "value": p.value, "method": sens.method[j]}
        for key in left_d:
            row[f"d_{key}_left"] = float(left_d[key][j])
            row[f"d_{key}_right"] = float(right_d[key][j])
            row[f"e_{key}_left"] = float(left_e[key][j])
            row[f"e_{key}_right"] = float(right_e[key][j])
        row["rank_score"] = float(np.nanmax([abs(row[f"e_{k}_{s}"]) for k in RANKED for s in ("left", "right")]
                                            + [0.0]))
        rows.append(row)
    rows.sort(key=lambda r: -r["rank_score"])
    return rows


def _csv(rows: list[dict]) -> str:
    """CSV text of dict rows (``market.atomic.csv_text``, the project's one CSV writer)."""
    if not rows:
        return ""
    header = list(rows[0])
    return csv_text(header, [[repr(v) if isinstance(v, float) else v for v in (r[k] for k in header)] for r in rows])


#: Above this many stored derivatives ``sensitivity_full.npz`` is not written (it would be
#: hundreds of MB for a 20 x 1,000 market; the ranked aggregates are still written).
FULL_NPZ_LIMIT = 3_000_000


def _npz_bytes(sens) -> bytes | None:
    """Every per-entity derivative as sparse COO arrays: the right side of every parameter and the
    left side of the one-sided ones (elsewhere left == right); None above :data:`FULL_NPZ_LIMIT`."""
    one_sided = np.flatnonzero(sens.one_sided)
    mats = {f"{name}_right": mat for name, mat in sens.right.items()}
    mats.update({f"{name}_left": sens.left[name][:, one_sided] for name in sens.left})
    if sum(m.nnz for m in mats.values()) > FULL_NPZ_LIMIT:
        return None
    arrays = {"parameters": np.array([p.name for p in sens.parameters]), "method": sens.method.astype(str),
              "one_sided_columns": one_sided}
    for key, mat in mats.items():
        coo = mat.tocoo()
        arrays[f"{key}_row"], arrays[f"{key}_col"] = coo.row.astype(np.int32), coo.col.astype(np.int32)
        arrays[f"{key}_data"], arrays[f"{key}_shape"] = coo.data, np.array(mat.shape)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


# ============================================================================ plots
def plot_tornado(rows: list[dict], title: str):
    """Tornado chart (a matplotlib figure): % change of MU utility and ASP profit for a -10 % / +10 % parameter change
    (linearised: elasticity x 10 %, the left elasticity for the decrease, the right for the increase)."""
    plt = headless_pyplot()
    top = [r for r in rows if np.isfinite(r["rank_score"])][:TORNADO_ROWS][::-1]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.42 * len(top) + 1.8), sharey=True)
    for ax, key in zip(axes, ("mu_utility_total", "asp_profit_total")):
        down = [-100 * TORNADO_STEP * np.nan_to_num(r[f"e_{key}_left"]) for r in top]
        up = [100 * TORNADO_STEP * np.nan_to_num(r[f"e_{key}_right"]) for r in top]
        y = np.arange(len(top))
        ax.barh(y - 0.2, down, height=0.4, color="tab:blue", label="parameter -10 %")
        ax.barh(y + 0.2, up, height=0.4, color="tab:orange", label="parameter +10 %")
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels([r["label"] + (" (kink: one-sided)" if r["method"] == "one-sided" else "") for r in top],
                           fontsize=8)
        ax.set_xlabel(f"change of {key.replace('_', ' ')} [%]")
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_robustness(rob):
    """Histograms of the outcomes over the certified draws, with the unperturbed value (a figure)."""
    plt = headless_pyplot()
    keys = ("welfare", "mu_utility_total", "asp_profit_total", "mean_qoe")
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    good = [r for r in rob.records if r["status"] == "converged"]
    for ax, key in zip(axes, keys):
        values = [r[key] for r in good]
        if values:
            ax.hist(values, bins=min(30, max(5, len(values) // 4)), color="tab:blue", alpha=0.8)
        if key in rob.baseline:
            ax.axvline(rob.baseline[key], color="black", lw=1.2, label="unperturbed")
        ax.set_xlabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("draws")
    axes[0].legend(fontsize=8)
    bounds = ", ".join(f"{k} +-{100 * v:g}%" for k, v in rob.perturb.items())
    fig.suptitle(f"{len(rob.records)} draws ({bounds}); {100 * rob.certified_fraction:.1f}% certified", fontsize=10)
    fig.tight_layout()
    return fig


# ============================================================================ text and files
def format_report(report: StressReport, sens_rows: list[dict] | None = None, top: int = 10) -> str:
    """The report as Markdown (also what the command prints)."""
    scn, res = report.scenario, report.result
    cert = res.certificate
    lines = [f"# Stress report: {scn.market.name}", "",
             f"Scenario `{report.config.scenario}` ({len(scn.asps)} ASPs, {len(scn.mus)} MUs, "
             f"bandwidth_model={scn.market.bandwidth_model}, asp_cost={scn.market.asp_cost}); solver {res.solver}: "
             f"status **{res.status}** (max relative regret {cert.max_relative_regret:.2e}, "
             f"KKT residual {cert.kkt_residual:.2e}).", "", "## Uniqueness", ""]
    if report.probe is None:
        lines.append("(skipped: --starts 0)")
    else:
        lines += ["```", report.probe.summary(), "```"]
    lines += ["", "## Sensitivity", ""]
    if report.sensitivity is None:
        lines.append(f"(not computed: {report.sensitivity_error or 'skipped'})")
    else:
        sens = report.sensitivity
        methods = {m: int(np.sum(sens.method == m)) for m in ("implicit", "one-sided")}
        lines.append(f"{len(sens.parameters)} parameters: {methods['implicit']} by the implicit function theorem "
                     f"(exact), {methods['one-sided']} one-sided at a kink.")
        if sens.kinks:
            lines.append("Kinks: " + "; ".join(sens.kinks) + ". For these ASPs' parameters the derivatives are "
                         "one-sided (left = parameter decreasing, right = increasing), from warm-started re-solves; "
                         "the equilibrium there is not locally unique.")
        if sens.continuation_failures:
            lines.append(f"Warning: {sens.continuation_failures} re-solves of the difference quotients were not certified.")
        lines += ["", f"Elasticities (d log outcome / d log parameter), top {top} of {len(sens_rows)}:", "",
                  "| parameter | method | welfare | MU utility | ASP profit | mean QoE |", "|---|---|---|---|---|---|"]
        for row in sens_rows[:top]:
            cells = []
            for key in ("welfare", "mu_utility_total", "asp_profit_total", "mean_qoe"):
                lo, hi = row[f"e_{key}_left"], row[f"e_{key}_right"]
                cells.append(f"{hi:+.4g}" if row["method"] != "one-sided" else f"{lo:+.4g} / {hi:+.4g}")
            lines.append(f"| {row['label']} | {row['method']} | " + " | ".join(cells) + " |")
        lines += ["", "Figure: `tornado.png`; every parameter in `sensitivity.csv`; per-MU and per-ASP derivatives "
                      "in `sensitivity_full.npz` (not written above 3 million derivatives)."]
    lines += ["", "## Robustness", ""]
    rob = report.robustness
    if rob is None:
        lines.append("(skipped: --samples 0)")
    else:
        bounds = ", ".join(f"{k} within +-{100 * v:g}%" for k, v in rob.perturb.items())
        lines += [f"{len(rob.records)} draws ({bounds}); certified: {100 * rob.certified_fraction:.1f}%.", "",
                  "| outcome | unperturbed | p5 | p25 | p50 | p75 | p95 |", "|---|---|---|---|---|---|---|"]
        for key, pct in rob.percentiles.items():
            base = rob.baseline.get(key)
            lines.append(f"| {key} | {'' if base is None else f'{base:.6g}'} | "
                         + " | ".join(f"{pct[p]:.6g}" for p in sorted(pct)) + " |")
        if rob.worst is not None:
            worst = rob.records[rob.worst]
            lines += ["", f"Worst certified draw by {rob.worst_by}: #{rob.worst} ({rob.worst_by} "
                          f"{worst[rob.worst_by]:.6g}); its scenario is `worst_case.toml` "
                          f"(`incentive solve worst_case.toml`)."]
        failed = [r for r in rob.records if r["status"] != "converged"]
        if failed:
            lines.append(f"Not certified: draws {', '.join(str(r['index']) for r in failed[:20])}"
                         + (" ..." if len(failed) > 20 else "") + " (statuses in robustness.csv).")
        lines.append("Figure: `robustness.png`; every draw in `robustness.csv`.")
    lines += ["", "## Time per step", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in report.seconds.items()]
    return "\n".join(lines) + "\n"


def _probe_json(probe) -> dict:
    return {"summary": probe.summary(), "unique": probe.unique, "spread": probe.spread,
            "certified": probe.certified, "starts": len(probe.records), "differing_asps": probe.differing_asps,
            "cause": probe.cause, "cluster_tolerance": probe.cluster_tolerance,
            "equilibria": [{"starts": eq.starts, "spread": eq.spread, "outcomes": eq.outcomes, "kinks": eq.kinks,
                            "rewards": eq.rewards, "utility": eq.utility} for eq in probe.equilibria]}


def write_report(report: StressReport, out_dir) -> list[Path]:
    """Write the report folder (whole or not at all); returns the files written.

    ``out_dir``: a path, or the plan ``incentive.outdir.check_output_dir`` returned (the command
    checks the output policy before any work)."""
    from incentive.outdir import staged_output_dir
    from market.scenario import write_scenario

    sens_rows = ranked_sensitivity(report.sensitivity) if report.sensitivity is not None else []
    names = []
    with staged_output_dir(out_dir) as stage:
        def put(name, data):
            names.append(name)
            if hasattr(data, "savefig"):
                atomic_write_png(stage / name, data)
            elif isinstance(data, bytes):
                atomic_write_bytes(stage / name, data)
            elif isinstance(data, str):
                atomic_write_text(stage / name, data)
            else:
                atomic_write_json(stage / name, json_ready(data))

        summary = {"scenario": report.config.scenario, "status": report.result.status,
                   "config": report.config.__dict__, "seconds": report.seconds}
        put("equilibrium.json", report.result.to_dict())
        if report.probe is not None:
            summary["uniqueness"] = _probe_json(report.probe)
            put("uniqueness.csv", _csv([{"start": r["index"], "status": r["status"],
                                         "equilibrium": next((i for i, eq in enumerate(report.probe.equilibria)
                                                              if r["index"] in eq.starts), ""),
                                         "seconds": r["seconds"],
                                         **{k: r.get(k, "") for k in ("welfare", "mu_utility_total",
                                                                      "asp_profit_total", "max_relative_regret")}}
                                        for r in report.probe.records]))
        if report.sensitivity is not None:
            sens = report.sensitivity
            summary["sensitivity"] = {"kinks": sens.kinks, "base": sens.aggregate_base(),
                                      "continuation_failures": sens.continuation_failures,
                                      "top": sens_rows[:50]}
            put("sensitivity.csv", _csv(sens_rows))
            full = _npz_bytes(sens)
            if full is not None:
                put("sensitivity_full.npz", full)
            else:
                summary["sensitivity"]["full"] = f"not written: more than {FULL_NPZ_LIMIT} derivatives"
            put("tornado.png", plot_tornado(sens_rows, f"{report.scenario.market.name}: effect of a 10 % parameter "
                                                       f"change (linearised, top {TORNADO_ROWS})"))
        else:
            summary["sensitivity"] = {"error": report.sensitivity_error}
        rob = report.robustness
        if rob is not None:
            summary["robustness"] = {"perturb": rob.perturb, "samples": len(rob.records),
                                     "certified_fraction": rob.certified_fraction, "percentiles": rob.percentiles,
                                     "baseline": rob.baseline, "worst_by": rob.worst_by, "worst": rob.worst}
            from solvers.stress import OUTCOMES

            put("robustness.csv", _csv([{"draw": r["index"], "status": r["status"], "seconds": r["seconds"],
                                         **{k: r.get(k, "") for k in OUTCOMES}} for r in rob.records]))
            put("robustness.png", plot_robustness(rob))
            if rob.worst is not None:
                write_scenario(rob.draw(rob.worst), stage / "worst_case.toml")
                names.append("worst_case.toml")
        put("stress.json", summary)
        put("report.md", format_report(report, sens_rows))
    return [Path(out_dir) / n for n in names]
