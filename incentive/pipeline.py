"""End-to-end pipeline: market prices drive provisioning, and the backend measures what users get.

What this module is for
-----------------------
:func:`run_pipeline` is the whole design in one call (``incentive run``); it reads as its steps:

1. **Check the inputs** (:func:`check_inputs`): the scenario, its models, its ``[provisioning]``
   table, the policy file and whether the scenario is *calibrated* (its ASPs are the backend's
   measured ones, with best-of-N accuracy tables: ``provisioning.backend.calibration``).
2. **Calibrate** (optional, :func:`calibrate_inputs`): the same calibration as ``incentive backend
   calibrate`` on the scenario's models, written into the output folder; the run continues on
   the calibrated scenario.
3. **Price the trials** (:func:`price_trials`): a fixed point of market and provisioning. The
   market solves with the trials and BERs provisioning chose (best-of-N accuracy, N-fold
   compute and payload: ``provisioning.coupling.priced_market``; every answer certified);
   provisioning re-decides every slot at the new rewards and allocations
   (``provisioning.coupling.build_slots`` / ``decide_slots``, batched); it stops when no user's
   trials change and no priced accuracy moves by more than ``accuracy_tolerance``.
4. **Measure the users** (:func:`incentive.measuring.measure_users`): each user's requests with its trials through a
   link at its BER, by the backend's one batched measurement (``measure_groups``).
4b. **Prompt engineering** (optional, ``--prompt-engineering D.npz``;
   :func:`provisioning.prompting.service.compare_service`): every slot re-decided with the per-trial
   quality a demonstration dataset D measured without (strategy 0) and with prompt engineering
   (``prompt_policy``); QoE and trials per user in both (``result.json``'s ``prompt_engineering``).
5. **Assemble the typed records** (``incentive.assemble``; records of ``provisioning.coupling``).
6. **Write the report** (``incentive.report``) and ``result.json``, into a staged folder
   (``incentive.outdir``): the output appears whole or not at all.

May import: everything (``market``, ``solvers``, ``provisioning``, ``incentive``); nothing imports
this module except ``incentive``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from market.atomic import json_ready
from market.errors import InfeasibleError, MissingArtifactError, ScenarioError, UserError
from market.seeding import derive_seed
from provisioning.coupling import RESULT_SCHEMA_VERSION, RoundRecord

PROVISION_METHODS = ("d3pg", "oracle")
PARTIAL_SLOT_MODES = ("oracle", "pad")


@dataclass
class PipelineConfig:
    """Settings of one ``incentive run`` (saved as ``config.json`` in the output folder)."""

    provision: str = "d3pg"
    """Who picks trials and powers: ``"d3pg"`` (the shipped diffusion policy) or ``"oracle"``."""
    calibrate: bool = False
    """Calibrate the scenario's models first (as ``incentive backend calibrate``) and run on it."""
    samples: int = 120
    """Requests measured per user (accuracy CI half-width about ``1/sqrt(samples)``)."""
    calibration_samples: int = 150
    """Requests per calibration point with ``calibrate`` (the shipped default was calibrated with 150)."""
    seed: int = 0
    """Run seed: user states, measurement and calibration requests derive from it."""
    solver: str | None = None
    """Market solver name (default: the scenario's ``[market] solver``)."""
    allow_uncertified: bool = False
    """Carry on with an equilibrium whose certificate did not pass (the report says so)."""
    partial_slot: str = "oracle"
    """A slot with fewer than ``Q`` users: ``"oracle"`` (exact optimum of the k-user problem) or
    ``"pad"`` (the policy on ``Q`` users, padding users of weight 0, their allocation discarded)."""
    policy_path: str | None = None
    """D3PG policy file (``.safetensors``); default: the one shipped in ``provisioning/trained``."""
    best_of_k: int | None = None
    """D3PG decisions: ``None`` uses the shipped policy's best-of-K when it has a critic; 1 one sample."""
    steps: int | None = None
    """Denoising steps of every backend model (default: each model's own default)."""
    device: str | None = None
    """``"cpu"`` or ``"cuda"`` for the backend (default: CUDA when present)."""
    quick: bool = False
    """Test mode: few samples (``samples=6``, ``calibration_samples=10``)."""
    max_rounds: int = 10
    """Most rounds of the market <-> provisioning fixed point."""
    accuracy_tolerance: float = 0.005
    """The fixed point has converged when no trials change and no priced accuracy moves more."""
    progress: bool = True
    """Progress bars on stderr for long stages."""
    prompt_engineering: str | None = None
    """A demonstration dataset D (``incentive prompts dataset``): compare serving without and with
    prompt engineering (step 4b); ``None`` skips it."""
    prompt_policy: str = "empirical"
    """The engineered variant's strategy policy (``provisioning.prompting.service.POLICY_CHOICES``)."""

    def resolved(self) -> "PipelineConfig":
        """A copy with ``quick`` applied and every field checked (``UserError`` naming the field)."""
        out = PipelineConfig(**asdict(self))
        if out.quick:
            out.samples, out.calibration_samples = min(out.samples, 6), min(out.calibration_samples, 10)
        is_int = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool)  # noqa: E731
        checks = [
            ("provision", out.provision in PROVISION_METHODS, f"one of {PROVISION_METHODS}"),
            ("partial_slot", out.partial_slot in PARTIAL_SLOT_MODES, f"one of {PARTIAL_SLOT_MODES}"),
            ("samples", is_int(out.samples) and out.samples >= 1, "an integer >= 1"),
            ("calibration_samples", is_int(out.calibration_samples) and out.calibration_samples >= 1, "an integer >= 1"),
            ("seed", is_int(out.seed) and 0 <= out.seed < 2**63, "an integer in [0, 2^63)"),
            ("steps", out.steps is None or (is_int(out.steps) and 1 <= out.steps <= 1000), "an integer in 1..1000"),
            ("best_of_k", out.best_of_k is None or (is_int(out.best_of_k) and out.best_of_k >= 1), "an integer >= 1"),
            ("device", out.device in (None, "cpu", "cuda"), "'cpu' or 'cuda'"),
            ("max_rounds", is_int(out.max_rounds) and out.max_rounds >= 1, "an integer >= 1"),
            ("accuracy_tolerance", isinstance(out.accuracy_tolerance, (int, float)) and 0 <= out.accuracy_tolerance <= 1,
             "a number in [0, 1]"),
        ]
        for name, ok, what in checks:
            if not ok:
                raise UserError(f"pipeline option {name} must be {what}, got {getattr(out, name)!r}")
        return out


@dataclass
class PipelineResult:
    """What one pipeline run produced (``result.json`` is :meth:`to_dict`; schema in ``docs/pipeline.md``)."""

    scenario_file: str
    out_dir: str
    config: dict
    market: dict
    """The final equilibrium (``EquilibriumResult.to_dict()``), solved with the priced trials."""
    calibrated: bool
    """Whether the scenario's ASPs are the backend's measured ones (after ``--calibrate`` if given)."""
    uncalibrated_reasons: list
    calibration: dict | None
    """With ``--calibrate``: the measured profiles and where the calibration was written."""
    certified: bool
    rounds: list
    """:class:`provisioning.coupling.RoundRecord` per round of the fixed point."""
    converged: bool
    slots: list
    users: list
    asps: list
    summary: dict
    notes: list
    timings_s: dict
    device: str
    files: list = field(default_factory=list)
    prompt_engineering: dict | None = None
    """With ``--prompt-engineering``: ``provisioning.prompting.service.PromptEngineeringComparison``."""
    schema_version: int = RESULT_SCHEMA_VERSION

    def to_dict(self) -> dict:
        """JSON-ready form (``result.json``)."""
        return json_ready(asdict(self))


@dataclass
class Inputs:
    """The checked inputs of a run."""

    path: Path
    scenario: Any
    market: Any
    """The scenario's one-generation :class:`market.model.Market`."""
    models: dict
    """ASP name -> backend model, for every ASP that serves MUs."""
    accuracy_tables: dict
    """ASP index -> best-of-N accuracy table (calibrated models only)."""
    calibration_samples: dict
    """Model -> requests behind each accuracy-table cell."""
    uncalibrated: list
    """Why the scenario is not the backend's measured world (empty: calibrated)."""
    setup: Any
    """:class:`provisioning.coupling.SlotSetup` without the policy."""
    policy_file: Path | None


def find_policy(path: str | None = None, scenario_name: str = "paper-3users") -> Path:
    """The D3PG policy file: ``path``, else the one shipped for the provisioning scenario.

    Raises
    ------
    MissingArtifactError
        With the commands that make it, or ``--provision oracle`` to run without it.
    """
    from provisioning.trained import shipped_policy_path

    p = Path(path) if path else shipped_policy_path(scenario_name)
    if not p.is_file():
        raise MissingArtifactError(
            f"{p}: no such D3PG policy file; train and ship one with `incentive provision train --agent d3pg "
            f"--scenario {scenario_name}` then `incentive provision ship`, pass one with `--policy FILE`, "
            "or run with `--provision oracle`")
    return p


def check_models(scenario, market) -> dict[str, str]:
    """ASP name -> backend model for every ASP that serves MUs (``ScenarioError`` naming the field)."""
    from provisioning.backend.measurement import is_measured_model, measured_model_names

    served, out, shipped = set(int(i) for i in market.mu_asp), {}, ", ".join(measured_model_names())
    for n, asp in enumerate(scenario.asps):
        if n not in served:
            continue
        if asp.model is None or not is_measured_model(asp.model):
            what = "names no backend model" if asp.model is None else f"runs model {asp.model!r}, which is not shipped"
            raise ScenarioError(f"ASP {asp.name!r} serves MUs but {what}; shipped models: {shipped}, each optionally "
                                "with @STEPS (e.g. scenes-large@10), or a folder with a shipped-layout model",
                                file=scenario.file, field=f"asp[{n}].model")
        out[asp.name] = asp.model
    return out


def check_inputs(path, config: PipelineConfig) -> Inputs:
    """Load and check everything before any heavy work (errors name the file and field)."""
    from market.model import Market
    from market.scenario import load_scenario
    from provisioning.backend.calibration import calibration_status, read_calibration
    from provisioning.coupling import SlotSetup, provisioning_config_for_market, provisioning_document, quality_model_from_table

    scenario = load_scenario(path)
    market = Market.from_scenario(scenario)
    models = check_models(scenario, market)
    document = provisioning_document(scenario.extra_tables.get("provisioning"), f"{scenario.file} [provisioning]")
    q = document.get("num_users") if isinstance(document.get("num_users"), int) else 1
    base = provisioning_config_for_market(document, user_weights=[1.0] * max(1, q), time_per_trial_s=1e-3,
                                          source=f"{scenario.file} [provisioning]")
    calibration = read_calibration(scenario)
    uncalibrated = calibration_status(scenario, models)
    index = scenario.asp_index()
    tables = {index[a]: calibration[m].accuracy_table for a, m in models.items()
              if m in calibration and calibration[m].accuracy_table and not uncalibrated}
    quality = {a: quality_model_from_table(calibration[m].quality) for a, m in models.items()
               if not uncalibrated and calibration[m].quality}
    samples = {m: int(calibration[m].accuracy_table.get("samples", 0)) for m in set(models.values())
               if not uncalibrated and calibration[m].accuracy_table}
    policy_file = find_policy(config.policy_path, base.name) if config.provision == "d3pg" else None
    setup = SlotSetup(document=document, base=base, quality_models=quality, provision=config.provision,
                      partial_slot=config.partial_slot)
    return Inputs(Path(path), scenario, market, models, tables, samples, uncalibrated, setup, policy_file)


def solve_market(market, solver: str, config: PipelineConfig, file, log: Callable[[str], None]):
    """Solve with ``solver`` and certify; raise on infeasible or (unless allowed) uncertified."""
    from solvers.registry import solve

    result = solve(market, solver)
    if result.status == "infeasible":
        raise InfeasibleError(
            f"{file}: the market has no feasible equilibrium ({result.message or 'infeasible'}). Fix: lower or remove "
            "the MUs' `qoe_required` floors, raise their `reward_max`, or give the ASPs more `compute_capacity` / "
            "`bandwidth_capacity`.")
    if result.status != "converged":
        cert = result.certificate.to_dict() if result.certificate is not None else {}
        figures = ", ".join(f"{k} {cert[k]:.3g}" for k in ("kkt_residual", "max_relative_regret", "nashconv")
                            if isinstance(cert.get(k), (int, float)))
        if not config.allow_uncertified:
            raise UserError(f"{file}: the equilibrium is not certified (status {result.status}; {figures}). Try another "
                            "solver (`--solver implicit-gradient`), more iterations ([market] max_iterations), or "
                            "accept it with `--allow-uncertified` (the report will say so).")
        log(f"warning: equilibrium NOT certified (status {result.status}; {figures}); continuing (--allow-uncertified)")
    return result


def calibrate_inputs(inputs: Inputs, backend, config: PipelineConfig, stage: Path,
                     log: Callable[[str], None]) -> tuple[Inputs, dict]:
    """Calibrate the scenario's models (``incentive backend calibrate``'s function and defaults,
    the run's seed and ``calibration_samples``) into ``stage/calibration``; the calibrated inputs."""
    from provisioning.backend.calibration import CalibrateConfig, calibrate

    steps = sorted({m.default_steps for m in backend.models.values()})
    cal = CalibrateConfig(models=sorted(set(inputs.models.values())), steps_grid=steps,
                          trials_grid=list(range(1, inputs.setup.base.max_trials + 1)),
                          samples=config.calibration_samples, seed=config.seed, base_scenario=str(inputs.path))
    out = calibrate(cal, stage / "calibration", log=lambda m: log(f"      {m}"), loaded=backend.models,
                    evaluator=backend.evaluator)
    calibrated = check_inputs(out["scenario"], replace(config, provision="oracle"))
    calibrated = replace(calibrated, policy_file=inputs.policy_file,
                         setup=replace(calibrated.setup, provision=config.provision))
    return calibrated, {"profiles": out["profiles"], "folder": "calibration", "scenario": "calibration/scenario.toml",
                        "config": asdict(cal)}


@dataclass
class Priced:
    """The fixed point's outcome: the final equilibrium, slots, decisions, and per-MU decisions."""

    result: Any
    slots: list
    decisions: list
    rounds: list
    converged: bool
    trials: np.ndarray
    power: np.ndarray
    ber: np.ndarray
    held: np.ndarray
    """bool (M,): users held at their priced trials after a 2-cycle."""


def price_trials(inputs: Inputs, setup, config: PipelineConfig, log: Callable[[str], None], notes: list) -> Priced:
    """Market <-> provisioning fixed point (``docs/pipeline.md``, "Trials priced by the market").

    A user caught in a 2-cycle (priced ``a, b, a`` and deciding ``b`` again) is *held*: from
    then on it keeps the trials the market last priced. The loop has
    converged when no other user changes trials and no priced accuracy moves by more than
    ``accuracy_tolerance``; ``held`` lists the held users (empty for a plain fixed point).
    """
    from provisioning.coupling import build_slots, decide_slots, priced_market, user_decisions

    n = inputs.market.n_mus
    trials, ber, previous_rewards = np.ones(n, dtype=np.int64), np.zeros(n), None
    priced = [trials]
    accuracy = priced_market(inputs.market, trials, ber, inputs.accuracy_tables).accuracy_received
    rounds, held = [], np.zeros(n, dtype=bool)
    for r in range(1, config.max_rounds + 1):
        result = solve_market(priced_market(inputs.market, trials, ber, inputs.accuracy_tables),
                              config.solver or inputs.scenario.market.solver, config, inputs.scenario.file, log)
        slots = build_slots(inputs.scenario, result, setup, config.seed, notes if r == 1 else None)
        decisions = decide_slots(slots, setup.policy, setup.best_of_k, derive_seed(config.seed, 4, 1, bits=31))
        decided, power, new_ber = user_decisions(slots, decisions, n)
        if len(priced) >= 3:
            held |= (decided != trials) & (decided == priced[-2]) & (priced[-3] == trials)
        new_trials = np.where(held, trials, decided)
        new_accuracy = priced_market(inputs.market, new_trials, new_ber, inputs.accuracy_tables).accuracy_received
        changed, moved = int(np.sum(new_trials != trials)), float(np.max(np.abs(new_accuracy - accuracy), initial=0.0))
        rounds.append(RoundRecord(r, result.status, result.status == "converged", trials.tolist(), decided.tolist(),
                                  changed, moved, None if previous_rewards is None else
                                  float(np.max(np.abs(result.rewards - previous_rewards), initial=0.0)),
                                  int(held.sum())))
        log(f"      round {r}: market {result.status}; {changed} user(s) change trials, priced accuracy moves "
            f"{moved:.4f}" + (f", {int(held.sum())} held after a cycle" if held.any() else ""))
        if changed == 0 and moved <= config.accuracy_tolerance:
            return Priced(result, slots, decisions, rounds, True, trials, power, new_ber, held)
        trials, ber, accuracy, previous_rewards = new_trials, new_ber, new_accuracy, result.rewards
        priced.append(trials)
    notes.append(f"The market <-> provisioning loop did NOT converge in {config.max_rounds} rounds: users are "
                 "measured with the trials the final market priced, and provisioning would still change some.")
    return Priced(result, slots, decisions, rounds, False, np.asarray(rounds[-1].trials_priced), power, ber, held)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_pipeline(scenario_path: str | Path, out_dir: str | Path, config: PipelineConfig | None = None,
                 log: Callable[[str], None] | None = None) -> PipelineResult:
    """Run inputs -> (calibration) -> priced trials -> measured users -> records -> report.

    Raises ``ScenarioError``, ``InfeasibleError``, ``MissingArtifactError`` or ``UserError`` on
    a malformed scenario, unknown model, infeasible or uncertified market, or missing policy.
    """
    from incentive.assemble import asp_records, summarise, user_records
    from incentive.measuring import load_backend, measure_users
    from incentive.outdir import staged_output_dir
    from incentive.report import standard_notes, write_report
    from market.atomic import atomic_write_json
    from provisioning.coupling import slot_record

    log, config = log or _stderr, (config or PipelineConfig()).resolved()
    clock, timings, notes = time.perf_counter(), {}, []
    lap = lambda name, t0: timings.__setitem__(name, time.perf_counter() - t0)  # noqa: E731
    inputs = check_inputs(scenario_path, config)
    engineering = _prompt_engineering(config)
    with staged_output_dir(out_dir) as stage:
        t0 = time.perf_counter()
        backend = load_backend(inputs.models, config)
        lap("load_models_s", t0)
        calibration = None
        if config.calibrate:
            t0 = time.perf_counter()
            log(f"[calibrate] {', '.join(sorted(backend.models))}, {config.calibration_samples} requests per point")
            inputs, calibration = calibrate_inputs(inputs, backend, config, stage, log)
            lap("calibration_s", t0)
        setup = _with_policy(inputs, config)
        t0 = time.perf_counter()
        log(f"[1/3] pricing the trials: market <-> provisioning ({config.provision}, slots of Q = {setup.q})")
        priced = price_trials(inputs, setup, config, log, notes)
        lap("market_and_provisioning_s", t0)
        t0 = time.perf_counter()
        log(f"[2/3] measuring {inputs.market.n_mus} users x {config.samples} requests with the backend models")
        measurements = measure_users(priced, inputs, backend, config, log)
        lap("measurement_s", t0)
        mu_names = priced.result.market.mu_names
        comparison = None
        if engineering is not None:
            from provisioning.prompting.service import compare_service

            log(f"      prompt engineering: slots re-decided with {engineering.dataset}'s quality, raw vs "
                f"{engineering.policy}")
            comparison = compare_service(priced.slots, setup, mu_names, engineering,
                                         derive_seed(config.seed, 4, 1, bits=31)).to_dict()
        slots = [slot_record(s, d, mu_names) for s, d in zip(priced.slots, priced.decisions)]
        users = user_records(priced.result, priced.slots, priced.decisions, measurements, inputs.models,
                             priced.trials, priced.power, priced.ber, inputs.calibration_samples)
        asps = asp_records(priced.result, users, inputs.models)
        certified = all(r.certified for r in priced.rounds[-1:])
        held = [mu_names[m] for m in np.flatnonzero(priced.held)]
        summary = summarise(priced.result, users, asps, slots, config.provision, priced.rounds, priced.converged,
                            certified, held)
        standard_notes(notes, config, inputs, setup, slots, users)
        timings["total_s"] = time.perf_counter() - clock
        pipeline_result = PipelineResult(
            scenario_file=str(scenario_path), out_dir=str(out_dir), config=asdict(config),
            market=priced.result.to_dict(), calibrated=not inputs.uncalibrated,
            uncalibrated_reasons=list(inputs.uncalibrated), calibration=calibration, certified=certified,
            rounds=priced.rounds, converged=priced.converged, slots=slots, users=users, asps=asps, summary=summary,
            notes=notes, timings_s=timings, device=backend.device, prompt_engineering=comparison)
        log("[3/3] writing the report")
        pipeline_result.files = write_report(pipeline_result.to_dict(), stage) + ["result.json"]
        atomic_write_json(stage / "result.json", pipeline_result.to_dict())
    log(f"done in {timings['total_s']:.1f} s: {out_dir}/report.md")
    return pipeline_result


def _prompt_engineering(config: PipelineConfig):
    """The checked prompt-engineering request of step 4b (``None`` without ``--prompt-engineering``)."""
    if config.prompt_engineering is None:
        return None
    from provisioning.prompting.service import PromptEngineering, check_prompt_engineering

    spec = PromptEngineering(str(config.prompt_engineering), config.prompt_policy)
    check_prompt_engineering(spec)
    return spec


def _with_policy(inputs: Inputs, config: PipelineConfig):
    """The slot setup with the D3PG policy loaded (``--provision d3pg``) and its best-of-K."""
    if inputs.policy_file is None:
        return inputs.setup
    from provisioning.agents.d3pg import D3PGPolicy

    policy = D3PGPolicy.load(inputs.policy_file, seed=derive_seed(config.seed, 4, 0, bits=31))
    best_of_k = config.best_of_k or (int(policy.config.best_of_k) if policy.critic is not None else 1)
    return replace(inputs.setup, policy=policy, best_of_k=best_of_k)
