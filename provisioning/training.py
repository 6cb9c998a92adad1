"""Training runs for every provisioning learner: the scaffolding shared by all agents.

What this module is for: :func:`train` runs one learner (any entry of
:mod:`provisioning.agents.registry`) for a budget of environment steps. Like Stable-Baselines3's
``OffPolicyAlgorithm`` (which owns collection, replay, save and load while ``TD3.train`` only
updates), this module owns everything common -- the run folder, the validation curve, the
checkpoints, resume and the Ctrl-C/SIGTERM guard -- and each agent supplies a :class:`Trainer` that
takes environment steps with its own update and saves its own state.

A run folder holds:

- ``train_config.json`` and the agent's configuration (``d3pg_config.json``, ``sb3_config.json``);
- ``progress.json`` -- steps done, the learning curve, the metrics of the unfinished evaluation
  interval, the latest checkpoint's folder; written atomically *after* the checkpoint it points
  to, so it never names a half-written one;
- ``checkpoints/step_XXXXXXXX/`` -- the trainer's state;
- when finished: the policy file (``policy.safetensors``, ``policy.zip``) and ``result.json``;
- with :attr:`TrainConfig.keep_best`: ``best/`` -- the policy of the evaluation with the highest
  selection score so far (SB3's ``EvalCallback(best_model_save_path=...)``), and ``progress.json``
  / ``result.json`` say at which step and with which score it was taken.

Every ``eval_every`` steps (on the grid of multiples of ``eval_every``, also after a resume) the
current policy is evaluated on fixed validation states (utility as a fraction of the oracle:
the learning curve) and a checkpoint is written. ``resume=True`` continues from the latest
checkpoint (a killed run loses at most the steps since it); a finished run is not repeated.
Ctrl-C or SIGTERM writes a checkpoint at the current step, including the metrics logged since the last
evaluation, so a resumed run's learning curve equals an uninterrupted one (wall-clock fields
aside). D3PG resumes bit-for-bit; SB3 runs resume from the saved model and replay buffer, which
SB3 does not make bit-identical.

May import: ``market`` (errors, atomic IO), numpy, tqdm and the rest of ``provisioning``
(torch and the learners' libraries through the agents, lazily).
"""
from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from market.atomic import atomic_write_json, json_ready
from market.errors import UserError
from provisioning.agents.registry import AgentSpec, available_agents, get as get_agent
from provisioning.evaluation import (
    ProvisioningProblem,
    Validation,
    problem_from_scenario,
    sampling_seed,
    training_state_seed,
)
from provisioning.policies import BestOfK, Policy

__all__ = [
    "AGENTS", "ProvisioningProblem", "TrainConfig", "TrainResult", "Trainer", "Validation", "InterruptGuard",
    "problem_from_scenario", "train", "tuned_d3pg_config", "load_trained_policy", "warmup_warning", "episode_seed",
]

AGENTS = available_agents()
#: Kept for callers of the old name: the state seed of one training episode.
episode_seed = training_state_seed


class Trainer(Protocol):
    """What an agent supplies to :func:`train`: its own steps and update, and its own state.

    Built as ``Trainer(env, config, seed=..., total_steps=...)`` (see the registry).
    """

    steps_done: int
    """Environment steps taken so far."""
    episodes: int
    """Episodes started and finished so far."""

    def advance(self, until_step: int, should_stop: Callable[[], bool], on_step: Callable[[], None]) -> list[dict]:
        """Take steps until ``steps_done == until_step`` or ``should_stop()`` after a step; return
        one dict of numeric metrics per step taken (reward, losses, ...)."""
        ...

    def validation_policy(self) -> Policy:
        """The policy to score on the validation states now (deterministic for a given state)."""
        ...

    def interrupted(self) -> None:
        """Bookkeeping before a checkpoint taken in the middle of an interval (e.g. a cut episode)."""
        ...

    def save_checkpoint(self, folder: Path) -> None:
        """Write everything needed to continue into ``folder`` (created)."""
        ...

    def load_checkpoint(self, folder: Path) -> None:
        """Restore the state written by :meth:`save_checkpoint`."""
        ...

    def save_policy(self, path: Path, metadata: dict) -> Policy:
        """Write the final policy file; return that policy (for the final evaluations)."""
        ...


@dataclass
class TrainConfig:
    """One training run (one agent, one seed); saved as ``train_config.json``."""

    agent: str
    """Learner: a name of :mod:`provisioning.agents.registry` (d3pg, ppo, sac, ddpg, td3)."""
    total_steps: int = 5000
    """Budget of environment steps (decisions), warm-up included; the same for every agent."""
    seed: int = 0
    """Seed of the networks, the exploration and the training states."""
    eval_every: int = 500
    """Evaluate on the validation states and checkpoint every this many environment steps."""
    eval_states: int = 64
    """Number of validation states for the learning curve."""
    scenario: str | None = None
    """Scenario file (None = in-memory problem, e.g. tests)."""
    keep_best: bool = False
    """Also keep the policy of the best evaluation in ``best/`` (model selection). The score is the
    validation's ``selection_fraction`` when it has one (states kept apart from any test states,
    e.g. :class:`provisioning.denoising.learning.DenoiseValidation` with selection states of the
    training users), else its ``fraction_of_oracle`` -- then the validation states are no longer a
    fair test of the selected policy."""

    def __post_init__(self) -> None:
        get_agent(self.agent)
        for name in ("total_steps", "eval_every", "eval_states"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise UserError(f"TrainConfig.seed must be an integer in [0, 2^63), got {self.seed!r}")


@dataclass
class TrainResult:
    """The outcome of a run.

    Attributes
    ----------
    run_dir : Path
        The run folder.
    agent : str
    seed : int
    steps_done : int
        Environment steps taken.
    finished : bool
        True when the budget was used up and the final policy written.
    curve : list of dict
        Validation evaluations: ``step``, ``fraction_of_oracle``, ``mean_utility``, wall time
        and the learner's logged metrics (means over the interval).
    policy_path : Path or None
        The final policy file (when finished).
    wall_seconds : float
        Training time summed over sessions (seconds).
    warnings : list of str
        Why the result may mislead (e.g. a budget shorter than the warm-up).
    best : dict or None
        With :attr:`TrainConfig.keep_best`: ``step`` and ``selection_fraction`` of the policy in
        ``best/`` (its folder: :attr:`best_dir`).
    """

    run_dir: Path
    agent: str
    seed: int
    steps_done: int
    finished: bool
    curve: list = field(default_factory=list)
    policy_path: Path | None = None
    wall_seconds: float = 0.0
    warnings: list = field(default_factory=list)
    best: dict | None = None

    @property
    def best_dir(self) -> Path | None:
        """The folder of the kept best policy (``keep_best`` runs), else None."""
        return self.run_dir / "best" if self.best is not None else None


def tuned_d3pg_config(**overrides) -> Any:
    """The D3PG configuration of the shipped policy and the comparisons (see ``docs/learners.md``)."""
    from provisioning.agents.d3pg import tuned_config

    return tuned_config(**overrides)


def warmup_warning(agent: str, learner_config, total_steps: int) -> str | None:
    """A warning when the budget does not go past the learner's random warm-up, else None."""
    warmup = int(getattr(learner_config, "warmup_steps", 0) or 0)
    if total_steps > warmup:
        return None
    return (f"{agent}: {total_steps} training steps do not exceed the {warmup} random warm-up steps, so the "
            f"policy never learned (it is the untrained network); train for well over {warmup} steps")


# --------------------------------------------------------------------------- Ctrl-C


class InterruptGuard:
    """Defers the first Ctrl-C (SIGINT) or SIGTERM to the next step boundary.

    The loop checks :attr:`requested` after each environment step, writes a checkpoint and calls
    :meth:`stop`, which hands the signal to the handler that was installed before (so a command
    line that turns SIGTERM into its own interrupt still sees it) and raises
    :class:`KeyboardInterrupt`. A second signal stops at once (the last checkpoint stays valid:
    every write is atomic). Outside the main thread it does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested:
            self._raise(signum)
        self.requested, self.signum = True, signum

    def _raise(self, signum: int) -> None:
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, None)  # e.g. the CLI's SIGTERM handler raises its own interrupt
        raise KeyboardInterrupt

    def stop(self) -> None:
        """Leave after the checkpoint: the deferred signal's own interrupt."""
        self._raise(self.signum if self.signum is not None else signal.SIGINT)

    def __enter__(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


# --------------------------------------------------------------------------- the run folder


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); delete the run folder or choose another --out") from exc


def _same(key: str, saved, mine) -> bool:
    """Equal fields; scenario paths compare by the file they resolve to (a moved default or a link)."""
    if key == "scenario" and saved is not None and mine is not None:
        return saved == mine or Path(saved).resolve() == Path(mine).resolve()
    return saved == mine


def _prepare_run_dir(run_dir: Path, config: TrainConfig, spec: AgentSpec, learner_config, resume: bool) -> dict | None:
    """Check the folder; return the saved progress when resuming, else None (fresh folder)."""
    progress_path = run_dir / "progress.json"
    if progress_path.exists():
        if not resume:
            raise UserError(f"{run_dir}: a run already exists here; pass --resume to continue it or choose another --out")
        saved = _read_json(run_dir / "train_config.json")
        mine = asdict(config)
        for key in ("agent", "seed", "scenario"):
            if not _same(key, saved.get(key), mine.get(key)):
                raise UserError(
                    f"{run_dir}/train_config.json: field '{key}' is {saved.get(key)!r}, this run asks for {mine.get(key)!r}"
                )
        progress = _read_json(progress_path)
        if saved.get("total_steps") != config.total_steps and not progress.get("finished"):
            atomic_write_json(run_dir / "train_config.json", mine)  # extending/shortening an unfinished run
        return progress
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "train_config.json", asdict(config))
    atomic_write_json(run_dir / spec.config_file, learner_config.to_dict())
    return None


def _commit_progress(run_dir: Path, progress: dict, keep: str | None) -> None:
    """Write progress.json atomically, then delete checkpoint folders other than ``keep``."""
    atomic_write_json(run_dir / "progress.json", json_ready(progress))
    ckpt_root = run_dir / "checkpoints"
    if ckpt_root.is_dir():
        for child in ckpt_root.iterdir():
            if keep is None or child.name != Path(keep).name:
                shutil.rmtree(child, ignore_errors=True)


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, unit="step", dynamic_ncols=True)


def _mean_metrics(rows: list[dict]) -> dict[str, float]:
    keys = sorted({k for row in rows for k in row})
    out = {}
    for k in keys:
        vals = [row[k] for row in rows if k in row and isinstance(row[k], (int, float)) and math.isfinite(row[k])]
        if vals:
            out[k] = float(np.mean(vals))
    return out


def _result_from_progress(run_dir: Path, config: TrainConfig, progress: dict) -> TrainResult:
    policy = progress.get("policy")
    return TrainResult(
        run_dir=run_dir,
        agent=config.agent,
        seed=config.seed,
        steps_done=int(progress.get("steps_done", 0)),
        finished=bool(progress.get("finished")),
        curve=list(progress.get("curve", [])),
        policy_path=(run_dir / policy) if policy else None,
        wall_seconds=float(progress.get("wall_seconds", 0.0)),
        warnings=list(progress.get("warnings", [])),
        best=progress.get("best"),
    )


# --------------------------------------------------------------------------- entry point


def _learner_config(spec: AgentSpec, given, saved: dict | None, run_dir: Path):
    """The original run's configuration on resume, else ``given`` (checked) or the default."""
    if saved is not None:
        return spec.config_from_dict(_read_json(run_dir / spec.config_file))
    if given is None:
        return spec.make_config()
    spec.check_config(given)
    return given


def train(
    problem: ProvisioningProblem,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    learner_config=None,
    d3pg_config=None,
    sb3_config=None,
    resume: bool = False,
    progress: bool = True,
    validation: Validation | None = None,
) -> TrainResult:
    """Train one agent for ``config.total_steps`` environment steps in ``run_dir``.

    Parameters
    ----------
    problem : ProvisioningProblem
    config : TrainConfig
    run_dir : path
        Folder of this run (created).
    learner_config : optional
        The agent's configuration (default: the registry's default for the agent).
        ``d3pg_config`` / ``sb3_config`` are accepted as older names for it.
    resume : bool
        Continue an interrupted run in ``run_dir`` (a finished one is returned as is).
    progress : bool
        Show a tqdm progress bar.
    validation : Validation, optional
        Precomputed validation states and oracle values (saves oracle time across runs).
    """
    import torch

    torch.set_num_threads(1)
    run_dir = Path(run_dir)
    spec = get_agent(config.agent)
    given = next((c for c in (learner_config, d3pg_config, sb3_config) if c is not None), None)
    fresh_config = _learner_config(spec, given, None, run_dir)
    saved = _prepare_run_dir(run_dir, config, spec, fresh_config, resume)
    if saved is not None and saved.get("finished"):
        if saved.get("steps_done", 0) >= config.total_steps:
            return _result_from_progress(run_dir, config, saved)
        raise UserError(
            f"{run_dir}: this run finished at {saved.get('steps_done')} steps and cannot be extended to "
            f"{config.total_steps} (its checkpoints were removed); train into another --out"
        )
    learner_cfg = _learner_config(spec, given, saved, run_dir) if saved is not None else fresh_config
    warnings = [w for w in [warmup_warning(config.agent, learner_cfg, config.total_steps)] if w]
    validation = validation or Validation(problem, config.eval_states)
    trainer = spec.trainer_class()(problem.make_env(None), learner_cfg, seed=config.seed, total_steps=config.total_steps)
    return _run(trainer, spec, config, run_dir, saved, progress, validation, warnings)


def _run(trainer, spec: AgentSpec, config: TrainConfig, run_dir: Path, saved: dict | None, progress_bar: bool,
         validation: Validation, warnings: list[str]) -> TrainResult:
    """The loop: advance to the next grid point, evaluate, checkpoint; finish with the policy file."""
    curve: list[dict] = []
    pending: list[dict] = []  # metrics of the unfinished interval (checkpointed with the weights)
    wall, interval_seconds = 0.0, 0.0
    best: dict | None = None  # {"step", "selection_fraction"} of the policy in best/ (keep_best)
    if saved is not None:
        trainer.load_checkpoint(run_dir / saved["checkpoint"])
        curve = list(saved.get("curve", []))
        pending = list(saved.get("pending_metrics", []))
        wall = float(saved.get("wall_seconds", 0.0))
        interval_seconds = float(saved.get("interval_seconds", 0.0))
        best = saved.get("best")
    session_start = time.perf_counter()

    def elapsed() -> float:
        return wall + (time.perf_counter() - session_start)

    def checkpoint() -> None:
        name = f"checkpoints/step_{trainer.steps_done:08d}"
        (run_dir / name).mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(run_dir / name)
        _commit_progress(run_dir, {
            "agent": config.agent, "steps_done": trainer.steps_done, "episodes": trainer.episodes, "checkpoint": name,
            "curve": curve, "pending_metrics": pending, "interval_seconds": interval_seconds,
            "wall_seconds": elapsed(), "finished": False, "warnings": warnings, "best": best,
        }, keep=name)

    def keep_if_best(score: float) -> dict | None:
        """Write the current policy to ``best/`` when its selection score beats the kept one's."""
        if not config.keep_best or not math.isfinite(score) or (best is not None and score <= best["selection_fraction"]):
            return best
        (run_dir / "best").mkdir(exist_ok=True)
        trainer.save_policy(run_dir / "best" / spec.policy_file, {
            "agent": config.agent, "seed": config.seed, "steps": trainer.steps_done, "scenario": config.scenario,
            "selected_by": "best selection score of the evaluations", "selection_fraction": score})
        return {"step": trainer.steps_done, "selection_fraction": score}

    bar = _progress_bar(config.total_steps, trainer.steps_done, f"{config.agent} seed {config.seed}", progress_bar)
    with InterruptGuard() as guard:
        try:
            while trainer.steps_done < config.total_steps:
                target = min(config.total_steps, (trainer.steps_done // config.eval_every + 1) * config.eval_every)
                chunk_start = time.perf_counter()
                pending += trainer.advance(target, lambda: guard.requested, lambda: bar.update(1))
                interval_seconds += time.perf_counter() - chunk_start
                if guard.requested:  # Ctrl-C or SIGTERM: stop at this step boundary with a checkpoint
                    trainer.interrupted()
                    checkpoint()
                    guard.stop()
                ev = validation.evaluate(trainer.validation_policy(), config.agent)
                selection = getattr(ev, "selection_fraction", None)  # None: select on fraction_of_oracle
                curve.append({
                    "step": trainer.steps_done, "fraction_of_oracle": ev.fraction_of_oracle,
                    "mean_utility": ev.mean_utility, "mean_trials": ev.mean_trials, "wall_seconds": elapsed(),
                    "seconds_per_step": interval_seconds / max(len(pending), 1), **_mean_metrics(pending),
                    **({"selection_fraction": selection} if selection is not None else {}),
                })
                best = keep_if_best(float(ev.fraction_of_oracle if selection is None else selection))
                bar.set_postfix(frac=f"{ev.fraction_of_oracle:.3f}")
                pending, interval_seconds = [], 0.0
                checkpoint()
        finally:
            bar.close()
    final = trainer.save_policy(run_dir / spec.policy_file, {
        "agent": config.agent, "seed": config.seed, "steps": trainer.steps_done, "scenario": config.scenario})
    result = {
        "agent": config.agent, "seed": config.seed, "steps_done": trainer.steps_done, "episodes": trainer.episodes,
        "finished": True, "policy": spec.policy_file, "curve": curve, "wall_seconds": elapsed(),
        "validation_fraction_of_oracle": curve[-1]["fraction_of_oracle"] if curve else None,
        "checkpoint": None, "warnings": warnings, "best": best,
    }
    if spec.best_of_k:
        final.reseed(sampling_seed(config.seed))
        best_of_k = validation.evaluate(BestOfK(final), f"{config.agent}-best-of-k")
        result["validation_best_of_k_fraction_of_oracle"] = best_of_k.fraction_of_oracle
    atomic_write_json(run_dir / "result.json", json_ready({k: v for k, v in result.items() if k != "curve"}))
    _commit_progress(run_dir, result, keep=None)
    return _result_from_progress(run_dir, config, result)


def load_trained_policy(run_dir: str | Path, agent: str, env=None, seed: int = 0) -> Policy:
    """The final policy of a finished run (``env`` is unused; kept for older callers)."""
    return get_agent(agent).load_policy(run_dir, seed=seed)
