"""The coupling of the market and provisioning: slots, their problems and decisions, and the
typed records that define ``incentive run``'s ``result.json``.

What this module is for
-----------------------
The market gives each MU a reward ``r_m`` and allots compute ``f_m`` and bandwidth ``b_m``;
provisioning decides each user's trials ``N_m`` and transmit power ``P_m`` (whence its bit error
rate). This module is the one place that translates between them (``docs/pipeline.md``,
"Provisioning"):

* :func:`priced_market`: the market that prices the trials provisioning chose (best-of-N
  accuracy from the measured tables at the user's trials and BER, N-fold compute and payload,
  ``market.model.Market.with_trials``);
* :func:`build_slots`: each ASP's MUs in slots of ``Q`` users, each slot a provisioning problem
  (:class:`SlotSpec`): rewards -> per-user weights (:func:`normalised_weights`), the market's
  per-trial compute time and link rate -> the latency model in units of each user's deadline
  (:func:`slot_problem`), the user's state (:func:`derive_user_state`), the measured quality
  tables -> the quality model (:func:`quality_model_from_table`);
* :func:`decide_slots`: trials and powers for every slot at once (the D3PG actor on a batch of
  observations, the exact oracle vectorised over slots), as :class:`SlotDecision`;
* the records :class:`SlotRecord`, :class:`UserRecord`, :class:`AspRecord` and
  :class:`RoundRecord`, whose ``asdict`` forms are ``result.json``'s ``slots``, ``users``,
  ``asps`` and ``rounds`` (schema version :data:`RESULT_SCHEMA_VERSION`, ``docs/pipeline.md``).

May import: numpy, ``market`` (model, qoe, errors), ``provisioning.*``.
"""
from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from market.errors import ScenarioError, UserError
from market.seeding import derive_seed
from provisioning.quality import InterpolatedQualityModel
from provisioning.scenario import (
    DEFAULT_SCENARIO_NAME,
    LatencyParams,
    ProvisioningConfig,
    provisioning_config_from_dict,
    provisioning_scenarios_dir,
)
from provisioning.state import State

#: Version of ``result.json``'s layout (bump on any change of the records below).
RESULT_SCHEMA_VERSION = 2
#: Keys of the provisioning config that the coupling sets from the market (a scenario's
#: ``[provisioning]`` table must not set them).
COUPLING_SET_FIELDS = (
    ("objective", "user_weights"),
    ("latency", "time_per_trial_s"),
    ("latency", "link_rate_bps"),
    ("latency", "image_bits"),
)
#: The measured scorer probability p is put on the provisioning paper's 0-10 score scale as 10 p.
SCORE_SCALE = 10.0


# ============================================================================= small pure helpers
def slot_indices(members: list[int], q: int) -> list[list[int]]:
    """Split an ASP's MU indices (market order) into consecutive slots of ``q`` (last may be short)."""
    return [members[i:i + q] for i in range(0, len(members), q)]


def normalised_weights(rewards: np.ndarray) -> np.ndarray:
    """Per-user weights of one slot: rewards divided by their mean (mean 1; all 1 if all zero).

    The provisioning objective is ``eta_q sum_i w_i QoE_i - eta_c sum_i C_i``; the shipped policy
    was trained with ``w = 1``. Dividing by the slot's mean keeps the users' relative weights
    (what the market's rewards say) and keeps the QoE-vs-cost balance of the trained scenario.
    """
    r = np.asarray(rewards, dtype=float)
    mean = float(r.mean()) if r.size else 0.0
    return r / mean if mean > 0 else np.ones_like(r)


def distance_from_link(spectral_efficiency: float, channel) -> float:
    """Distance (m) at which the provisioning channel's mean SNR at 1 W equals ``2^e - 1``.

    Ties the provisioning channel (path loss, noise) to the market's link quality: the market's
    spectral efficiency ``e`` is Shannon's ``log2(1 + SNR)`` at the reference bandwidth, so the
    user sits where the provisioning channel gives that mean SNR per watt.
    """
    snr = max(2.0 ** float(spectral_efficiency) - 1.0, 1e-12)
    reference_gain = channel.nakagami_omega * 10.0 ** (channel.path_gain_at_1m_db / 10.0) / channel.noise_power_w
    return float((reference_gain / snr) ** (1.0 / channel.path_loss_exponent))


def derive_user_state(mu, slot_position: int, ranges, channel, seed: int, mu_index: int,
                      difficulty_range: tuple | None = None) -> dict:
    """One user's provisioning state, deterministic under ``seed``.

    - distance: the MU's ``distance_m`` when the scenario gives one, else
      :func:`distance_from_link` of its spectral efficiency; clipped into the provisioning
      scenario's distance range (the range the policy was trained on; clipping is reported);
    - prompt difficulty: uniform in ``difficulty_range`` (the measured prompts' range when the
      scenario is calibrated) or the scenario's range, from ``SeedSequence([seed, 3, mu_index])``;
    - quality threshold: uniform in the threshold range of the user's position in its slot,
      from the same generator.
    """
    rng = np.random.default_rng(derive_seed(seed, 3, mu_index, bits=31))
    difficulty = float(rng.uniform(*(difficulty_range or ranges.difficulty)))
    lo, hi = ranges.quality_threshold[slot_position % len(ranges.quality_threshold)]
    threshold = float(rng.uniform(lo, hi))
    if mu.distance_m is not None:
        raw, source = float(mu.distance_m), "distance_m"
    else:
        raw, source = distance_from_link(mu.spectral_efficiency, channel), "spectral_efficiency"
    d_lo, d_hi = ranges.distance_m
    distance = float(min(max(raw, d_lo), d_hi))
    return {"difficulty": difficulty, "quality_threshold": threshold, "distance_m": distance,
            "distance_derived_m": raw, "distance_source": source, "distance_clipped": distance != raw}


def quality_model_from_table(table: Mapping) -> InterpolatedQualityModel:
    """The provisioning quality model of a model's measured quality table (``backend.calibrated.<m>.quality``).

    The table holds natural logs of the scorer's probability ``p`` of the requested digit; the
    provisioning objective's quality factor ``ln(q / q_th)`` uses the paper's 0-10 scale, so the
    score is ``q = 10 p`` (:data:`SCORE_SCALE`): ``ln q = ln p + ln 10``.
    """
    return InterpolatedQualityModel(
        difficulty=tuple(float(x) for x in table["difficulty"]),
        mean_log_score=tuple(float(x) + math.log(SCORE_SCALE) for x in table["mean_log_score"]),
        std_log_score=tuple(float(x) for x in table["std_log_score"]),
        ber_sensitivity=tuple(float(x) for x in table["ber_sensitivity"]),
    )


# ============================================================================= the provisioning base
def _deep_merge(base: dict, overrides: Mapping) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def provisioning_document(table: Mapping | None, source: str) -> dict:
    """The provisioning scenario a market scenario's ``[provisioning]`` table asks for, as a document.

    The table's optional ``scenario`` key names a shipped provisioning scenario (default
    :data:`provisioning.scenario.DEFAULT_SCENARIO_NAME`) or a path to one; every other key
    overrides that scenario's field of the same dotted name (same schema as the TOML files).
    The fields the coupling sets (:data:`COUPLING_SET_FIELDS`) are refused.

    Raises
    ------
    ScenarioError
        Naming ``source`` and the ``provisioning.*`` field.
    """
    table = dict(table or {})
    for section, key in COUPLING_SET_FIELDS:
        if isinstance(table.get(section), dict) and key in table[section]:
            raise ScenarioError("is set by the pipeline from the market's equilibrium; remove it",
                                file=source, field=f"provisioning.{section}.{key}")
    ref = table.pop("scenario", DEFAULT_SCENARIO_NAME)
    if not isinstance(ref, str):
        raise ScenarioError(f"must be a scenario name or path, got {ref!r}", file=source, field="provisioning.scenario")
    path = Path(ref) if Path(ref).suffix else provisioning_scenarios_dir() / f"{ref}.toml"
    try:
        base = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"no provisioning scenario {ref!r} ({path})", file=source,
                            field="provisioning.scenario") from None
    except UnicodeDecodeError:
        raise ScenarioError("not UTF-8 text (a binary file?)", file=path) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read it ({exc.strerror or exc})", file=source, field="provisioning.scenario") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}", file=path) from None
    return _deep_merge(base, table)


def provisioning_config_for_market(document: Mapping, *, user_weights, time_per_trial_s, link_rate_bps=None,
                                   image_bits: float | None = None, source: str = "<memory>") -> ProvisioningConfig:
    """The provisioning problem of one slot: ``document`` (:func:`provisioning_document`) with the
    market's per-user weights, time per trial and link rate, validated.

    Per-user lists of the document whose length differs from ``Q`` are replaced: quality
    threshold ranges by their hull, ``min_qoe`` must then be given per slot. If ``max_trials`` x
    seconds per trial reaches ``L_max`` (a slow compute share), ``max_trials`` is lowered to the
    largest value that keeps the latency factor positive for every user.

    Raises
    ------
    ScenarioError
        Naming ``source`` and the dotted field.
    """
    weights = [float(w) for w in user_weights]
    q = len(weights)
    data = copy.deepcopy(dict(document))
    data["num_users"] = q
    data.setdefault("objective", {})["user_weights"] = weights
    state = data.setdefault("state", {})
    thresholds = state.get("quality_threshold")
    if isinstance(thresholds, list) and thresholds and isinstance(thresholds[0], list) and len(thresholds) != q:
        state["quality_threshold"] = [min(t[0] for t in thresholds), max(t[1] for t in thresholds)]
    min_qoe = data["objective"].get("min_qoe")
    if isinstance(min_qoe, list) and len(min_qoe) != q:
        raise ScenarioError(f"has {len(min_qoe)} entries but the slot has {q} users; give one value",
                            file=source, field="objective.min_qoe")
    latency = data.setdefault("latency", {})
    latency["time_per_trial_s"] = list(time_per_trial_s) if np.ndim(time_per_trial_s) else float(time_per_trial_s)
    if link_rate_bps is not None:
        latency["link_rate_bps"] = list(link_rate_bps) if np.ndim(link_rate_bps) else float(link_rate_bps)
    else:
        latency.pop("link_rate_bps", None)
    if image_bits is not None:
        latency["image_bits"] = float(image_bits)
    try:  # keep the latency factor positive for every allowed N (lower N_max if compute is slow)
        per_user = lambda v: tuple(v) if isinstance(v, list) else (float(v),) * q  # noqa: E731
        seconds = LatencyParams(float(latency["max_latency_s"]), per_user(latency["time_per_trial_s"]),
                                None if latency.get("link_rate_bps") is None else per_user(latency["link_rate_bps"]),
                                float(latency.get("image_bits", 0.0))).seconds_per_trial()
        slowest = max(seconds)
        if slowest > 0 and int(data.get("max_trials", 1)) * slowest >= float(latency["max_latency_s"]):
            data["max_trials"] = max(1, math.ceil(float(latency["max_latency_s"]) / slowest) - 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        pass  # leave it to the validation, which names the field
    return provisioning_config_from_dict(data, source=source)


def slot_problem(document: Mapping, *, max_latency_s: float, weights, compute_s, rate_bps, payload_bits,
                 deadline_s, source: str) -> tuple[ProvisioningConfig, dict]:
    """The provisioning config of one slot (validated) and a record of what was set.

    Each user's times are expressed in units of its own deadline: seconds per trial
    ``L_max t_m / T_m`` (``t_m`` the market's latency of one trial), split into compute and
    transmission in the market's proportions, the transmission part given as
    ``image_bits / link_rate``. The latency factor is then exactly ``ln(T_m / (N t_m)) / ln(1 + N)``
    (the deadline is each user's ``L_max``), and lowering ``max_trials`` until
    ``N_max x seconds < L_max`` means every user can finish ``N_max`` trials before its deadline.

    Parameters
    ----------
    document : mapping
        :func:`provisioning_document`.
    max_latency_s : float
        ``L_max`` of the document (a unit: the results do not depend on it).
    weights : array (k,)
        Normalised per-user weights (:func:`normalised_weights`).
    compute_s : array (k,)
        Compute time of one trial, ``l_m c_n / f_m`` seconds (inf without compute).
    rate_bps : array (k,)
        Link rate ``e_m b_m`` (bit/s).
    payload_bits : array (k,)
        Bits of one trial's output.
    deadline_s : array (k,)
        ``T_m`` seconds.
    source : str
        Name used in error messages.
    """
    l_max = float(max_latency_s)
    compute_s, rate_bps, payload_bits, deadline_s = (np.asarray(x, dtype=float)
                                                     for x in (compute_s, rate_bps, payload_bits, deadline_s))
    with np.errstate(divide="ignore", invalid="ignore"):
        transmit_s = np.where(rate_bps > 0, payload_bits / np.where(rate_bps > 0, rate_bps, 1.0), np.inf)
    latency = compute_s + transmit_s
    no_resources = ~np.isfinite(latency)
    late = np.isfinite(latency) & (latency >= deadline_s)
    # users without resources (zero timeliness weight): a neutral 1% of L_max per trial
    fraction = np.where(no_resources, 0.01, latency / np.where(deadline_s > 0, deadline_s, 1.0))
    # users already late at one trial: just inside the deadline (latency factor ~ 0 at N = 1)
    fraction = np.where(late, 1.0 - 1e-6, fraction)
    seconds = l_max * fraction
    with np.errstate(divide="ignore", invalid="ignore"):
        compute_share = np.where(np.isfinite(latency) & (latency > 0), compute_s / latency, 0.5)
    compute_part = np.maximum(seconds * compute_share, 1e-12)
    transmit_part = np.maximum(seconds - compute_part, 1e-12)
    image_bits = float(max(np.max(payload_bits), 1.0))
    config = provisioning_config_for_market(document, user_weights=weights, time_per_trial_s=compute_part,
                                            link_rate_bps=image_bits / transmit_part, image_bits=image_bits,
                                            source=source)
    record = {
        "max_trials": int(config.max_trials), "max_latency_s": l_max, "image_bits": image_bits,
        "compute_per_trial_s": compute_s.tolist(), "transmit_per_trial_s": transmit_s.tolist(),
        "market_latency_per_trial_s": latency.tolist(), "deadline_s": deadline_s.tolist(),
        "late_users": np.flatnonzero(late).tolist(), "no_resource_users": np.flatnonzero(no_resources).tolist(),
    }
    return config, record


# ============================================================================= the market side
def priced_market(market, trials, ber, accuracy_tables: Mapping[int, Mapping] | None = None):
    """The market that prices ``trials`` per MU (``Market.with_trials``).

    ``accuracy_tables`` maps an ASP index to its model's best-of-N accuracy table
    (``provisioning.backend.calibration.best_of_n_accuracy``); MUs of an ASP without a table
    keep the ASP's one-trial accuracy. ``market`` is the scenario's one-generation market.
    """
    from provisioning.backend.calibration import best_of_n_accuracy

    trials = np.asarray(trials, dtype=float)
    accuracy = market.accuracy[market.mu_asp].astype(float).copy()
    for n, table in (accuracy_tables or {}).items():
        mine = market.mus_of(n)
        if mine.size:
            accuracy[mine] = best_of_n_accuracy(table, trials[mine], np.asarray(ber, dtype=float)[mine])
    return market.with_trials(trials, accuracy=accuracy, bits_per_output=market.payload_bits)


# ============================================================================= slots
@dataclass(frozen=True)
class SlotSpec:
    """One slot's provisioning problem.

    Attributes
    ----------
    name : str
        ``"<asp>#<index>"``.
    asp : str
    mus : tuple of int
        Market indices of the slot's real users.
    users : tuple of int
        Market indices of the problem's users (``mus`` plus padding copies when padded).
    partial : bool
        Fewer real users than the slot size ``Q``.
    padded : bool
        A partial slot filled with weight-0 copies of its last user for the fixed-size policy.
    method : str
        ``"d3pg"`` or ``"oracle"``: who decides (a partial, unpadded slot is always the oracle's).
    config : ProvisioningConfig
    state : State
    quality_model : QualityModel
        The measured tables' model when calibrated, else the config's simulated one.
    derived : list of dict
        Per user: :func:`derive_user_state`'s record.
    latency : dict
        :func:`slot_problem`'s record.
    """

    name: str
    asp: str
    mus: tuple
    users: tuple
    partial: bool
    padded: bool
    method: str
    config: ProvisioningConfig
    state: State
    quality_model: Any
    derived: list
    latency: dict


@dataclass(frozen=True)
class SlotSetup:
    """What every slot of a run shares: the provisioning document, its base config and the policy."""

    document: dict
    base: ProvisioningConfig
    quality_models: dict
    """ASP name -> QualityModel (measured tables) for calibrated ASPs."""
    provision: str
    partial_slot: str
    policy: Any = None
    best_of_k: int | None = None

    @property
    def q(self) -> int:
        """Slot size ``Q``."""
        return int(self.base.num_users)


def build_slots(scenario, result, setup: SlotSetup, seed: int, notes: list | None = None) -> list[SlotSpec]:
    """Every ASP's MUs (market order) in slots of ``Q``, each a provisioning problem.

    ``result`` is the equilibrium of :func:`priced_market`'s market: its rewards give the
    weights, its allocation the per-trial compute time ``l_m c_n / f_m`` and link rate
    ``e_m b_m``; a trial's payload is one output (``payload_bits / trials``).
    """
    from market.qoe import transmission_rate

    mk, resp = result.market, result.response
    trials = np.ones(mk.n_mus) if mk.trials is None else np.asarray(mk.trials, dtype=float)
    per_trial_work = mk.compute_work_s / trials
    with np.errstate(divide="ignore", invalid="ignore"):
        compute_s = np.where(resp.compute > 0, per_trial_work / np.where(resp.compute > 0, resp.compute, 1.0), np.inf)
    rate = transmission_rate(mk, resp.bandwidth)
    bits = mk.payload_bits / trials
    q, base = setup.q, setup.base
    p_lo, p_hi = base.state.p_total_w
    slots = []
    for n, asp in enumerate(scenario.asps):
        p_total = float(min(max(asp.transmit_power_w, p_lo), p_hi))
        if p_total != asp.transmit_power_w and notes is not None and mk.mus_of(n).size:
            notes.append(f"{asp.name}: transmit_power_w {asp.transmit_power_w:g} W clipped to the provisioning "
                         f"range [{p_lo:g}, {p_hi:g}] W as the slot's power budget")
        qm = setup.quality_models.get(asp.name)
        difficulty_range = (min(qm.difficulty), max(qm.difficulty)) if isinstance(qm, InterpolatedQualityModel) else None
        for s, idx in enumerate(slot_indices([int(m) for m in mk.mus_of(n)], q)):
            partial = len(idx) < q
            pad = partial and setup.partial_slot == "pad" and setup.provision == "d3pg" and setup.policy is not None
            users = list(idx) + ([idx[-1]] * (q - len(idx)) if pad else [])
            weights = normalised_weights(result.rewards[idx])
            if pad:
                weights = np.concatenate([weights, np.zeros(q - len(idx))])
            cfg, record = slot_problem(setup.document, max_latency_s=base.latency.max_latency_s, weights=weights,
                                       compute_s=compute_s[users], rate_bps=rate[users], payload_bits=bits[users],
                                       deadline_s=mk.deadline_s[users],
                                       source=f"{scenario.file} [provisioning] (slot {asp.name}#{s})")
            derived = [derive_user_state(scenario.mus[m], j, base.state, cfg.channel, seed, m, difficulty_range)
                       for j, m in enumerate(users)]
            state = State([d["difficulty"] for d in derived], [d["distance_m"] for d in derived],
                          [d["quality_threshold"] for d in derived], p_total)
            method = "d3pg" if setup.provision == "d3pg" and setup.policy is not None and (not partial or pad) else "oracle"
            slots.append(SlotSpec(name=f"{asp.name}#{s}", asp=asp.name, mus=tuple(idx), users=tuple(users),
                                  partial=partial, padded=pad, method=method, config=cfg, state=state,
                                  quality_model=qm if qm is not None else cfg.quality, derived=derived,
                                  latency=record))
    return slots


@dataclass(frozen=True)
class SlotDecision:
    """Trials and powers of one slot, and how they compare with the exact optimum.

    Attributes
    ----------
    trials, power : ndarray (k,)
        For the slot's real users (padding users dropped): ``N_m`` and ``P_m`` in watts.
    ber : ndarray (k,)
        Expected bit error rate at ``P_m`` (``provisioning.channel.expected_ber``).
    expected_qoe : ndarray (k,)
        Provisioning QoE (eq. (23), expected) of the chosen allocation.
    method : str
        ``"d3pg"`` or ``"oracle"``.
    utility, oracle_utility : float
        Expected penalised utility of the chosen allocation and of the optimum.
    policy_utility : float or None
        The policy's, where it ran (``None`` otherwise).
    oracle_trials, oracle_power : ndarray (Q,)
    oracle_exact : bool
    """

    trials: np.ndarray
    power: np.ndarray
    ber: np.ndarray
    expected_qoe: np.ndarray
    method: str
    utility: float
    oracle_utility: float
    policy_utility: float | None
    oracle_trials: np.ndarray
    oracle_power: np.ndarray
    oracle_exact: bool


def _policy_actions(specs: list[SlotSpec], policy, best_of_k: int | None, seed: int) -> list[np.ndarray]:
    """The policy's actions for ``specs`` (one batched call, its sampling seeded by ``seed`` so that the
    same slots give the same decisions in every round of the fixed point)."""
    import torch

    from provisioning.env import observation_of

    obs = np.stack([observation_of(s.config, s.state) for s in specs])
    if policy.actor.obs_dim != obs.shape[1]:
        raise UserError(f"the D3PG policy expects {policy.actor.obs_dim} observations "
                        f"({(policy.actor.obs_dim - 1) // 4} users), the slots have {obs.shape[1]}; "
                        "run with `--provision oracle` or train a policy for them")
    generator = torch.Generator().manual_seed(int(seed))
    if best_of_k and best_of_k > 1 and policy.critic is not None:
        return list(policy.act_best_of_k(obs, k=best_of_k, generator=generator))
    return list(policy.act(obs, generator=generator))


def decide_slots(specs: list[SlotSpec], policy=None, best_of_k: int | None = None, seed: int = 0) -> list[SlotDecision]:
    """Trials and powers for every slot: the oracle for all (vectorised over slots of the same
    ASP and ``N_max``), the policy (one batched call, seeded by ``seed``) for the slots it decides."""
    from provisioning.env import decode_action
    from provisioning.oracle import oracle_allocations_per_state
    from provisioning.qoe import evaluate_allocation

    oracle = [None] * len(specs)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(specs):
        groups.setdefault((s.asp, s.config.max_trials, s.config.num_users), []).append(i)
    for members in groups.values():
        answers = oracle_allocations_per_state([specs[i].config for i in members], [specs[i].state for i in members],
                                               quality_model=specs[members[0]].quality_model)
        for i, answer in zip(members, answers):
            oracle[i] = answer
    run_policy = [i for i, s in enumerate(specs) if s.method == "d3pg"] if policy is not None else []
    actions = dict(zip(run_policy, _policy_actions([specs[i] for i in run_policy], policy, best_of_k, seed))) if run_policy else {}
    decisions = []
    for i, s in enumerate(specs):
        policy_utility = None
        trials, power = oracle[i].trials, oracle[i].power
        if i in actions:
            trials, power = decode_action(s.config, s.state, actions[i])
        outcome = evaluate_allocation(s.config, s.state, trials, power, quality_model=s.quality_model)
        if i in actions:
            policy_utility = float(outcome.reward)
        k = len(s.mus)
        decisions.append(SlotDecision(
            trials=np.asarray(trials[:k], dtype=np.int64), power=np.asarray(power[:k], dtype=float),
            ber=np.clip(np.asarray(outcome.expected_ber, dtype=float)[:k], 0.0, 0.5),
            expected_qoe=np.asarray(outcome.expected_qoe[:k], dtype=float),
            method="d3pg" if i in actions else "oracle", utility=float(outcome.reward),
            oracle_utility=float(oracle[i].utility), policy_utility=policy_utility,
            oracle_trials=oracle[i].trials, oracle_power=oracle[i].power, oracle_exact=bool(oracle[i].exact)))
    return decisions


def user_decisions(specs: list[SlotSpec], decisions: list[SlotDecision], n_mus: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per MU (market order): trials, power (W) and expected BER from the slots' decisions."""
    trials, power, ber = np.ones(n_mus, dtype=np.int64), np.zeros(n_mus), np.zeros(n_mus)
    for s, d in zip(specs, decisions):
        idx = list(s.mus)
        trials[idx], power[idx], ber[idx] = d.trials, d.power, d.ber
    return trials, power, ber


# ============================================================================= records (result.json)
@dataclass
class RoundRecord:
    """One round of the market <-> provisioning fixed point (``result.json``'s ``rounds``)."""

    round: int
    market_status: str
    certified: bool
    trials_priced: list
    """Trials the market priced in this round, per MU."""
    trials_decided: list
    """Trials provisioning chose at this round's equilibrium, per MU."""
    users_changing_trials: int
    max_accuracy_change: float
    """Largest change of a priced accuracy (best-of-N at the new trials and BER) this round caused."""
    max_reward_change: float | None
    """Largest change of a reward from the previous round (``None`` in the first)."""
    users_held: int = 0
    """Users held at their priced trials after their decision cycled (2-cycle), so far."""


@dataclass
class SlotRecord:
    """One provisioning slot (``result.json``'s ``slots``)."""

    slot: str
    asp: str
    users: list
    size: int
    partial: bool
    padded: bool
    method: str
    p_total_w: float
    max_trials: int
    weights: list
    trials: list
    power_w: list
    utility: float
    oracle_utility: float
    policy_utility: float | None
    fraction_of_oracle: float | None
    """``policy_utility / oracle_utility`` where the policy ran and the optimum is positive."""
    oracle_exact: bool
    oracle_trials: list
    oracle_power_w: list
    state: dict
    latency_model: dict


def slot_record(spec: SlotSpec, decision: SlotDecision, mu_names) -> SlotRecord:
    """The :class:`SlotRecord` of a decided slot."""
    label = decision.method + (" (padded)" if spec.padded else "") + (
        " (partial slot)" if spec.partial and not spec.padded else "")
    u, o = decision.policy_utility, decision.oracle_utility
    return SlotRecord(
        slot=spec.name, asp=spec.asp, users=[mu_names[m] for m in spec.mus], size=len(spec.mus),
        partial=spec.partial, padded=spec.padded, method=label, p_total_w=spec.state.p_total_w,
        max_trials=int(spec.config.max_trials), weights=list(spec.config.objective.user_weights),
        trials=decision.trials.tolist(), power_w=decision.power.tolist(), utility=decision.utility,
        oracle_utility=o, policy_utility=u, fraction_of_oracle=(u / o) if (u is not None and o > 0) else None,
        oracle_exact=decision.oracle_exact, oracle_trials=np.asarray(decision.oracle_trials).tolist(),
        oracle_power_w=np.asarray(decision.oracle_power).tolist(), state=spec.state.to_dict(),
        latency_model=spec.latency)


@dataclass
class QoERecord:
    """QoE and its parts, with the figures they come from (modelled or measured)."""

    qoe: float
    qoe_accuracy: float
    qoe_tokens: float
    qoe_timeliness: float
    accuracy: float
    tokens: float
    latency_s: float
    payment: float
    utility: float


@dataclass
class UserRecord:
    """One MU (``result.json``'s ``users``): market, provisioning, measurement, modelled and
    measured QoE, and the gap split into noise and model error."""

    name: str
    asp: str
    model: str
    weights: dict
    reward: float
    value_per_qoe: float
    compute: float
    bandwidth: float
    link_rate_bps: float
    deadline_s: float
    tokens_requested: float
    provisioning: dict
    """``slot``, ``slot_method``, ``weight``, ``trials``, ``power_w``, ``ber``, ``distance_m``,
    ``distance_derived_m``, ``distance_clipped``, ``difficulty``, ``quality_threshold``,
    ``provisioning_qoe``, ``late``, ``no_resources``."""
    modelled: QoERecord
    measurement: dict
    """``samples``, ``accuracy``, ``accuracy_ci95``, ``accuracy_no_channel``, ``tokens``,
    ``bits_per_output``, ``bits_sent``, ``observed_ber``, ``compute_s``, ``compute_ci95``,
    ``transmission_s``, ``latency_s``, ``latency_ci95``, ``steps``."""
    measured: QoERecord
    measured_qoe_ci95: list
    qoe_gap: float | None
    """Measured - modelled QoE."""
    qoe_gap_noise: float | None
    """Half-width of the 95% interval of the gap from sampling alone: the measured accuracy's
    and the calibrated accuracy's binomial intervals and the compute time's, combined in
    quadrature (``docs/pipeline.md``)."""
    qoe_gap_model_error: float | None
    """The part of the gap beyond that interval (signed; 0 when the gap is within the noise)."""
    qoe_gap_parts: dict
    """The gap of each QoE part: ``accuracy``, ``tokens``, ``timeliness``."""


@dataclass
class AspRecord:
    """One ASP (``result.json``'s ``asps``): the market's figures and the measured QoE of its MUs."""

    name: str
    model: str | None
    mus: int
    compute_price: float | None
    bandwidth_price: float | None
    compute_used: float | None
    compute_capacity: float
    compute_binding: bool
    bandwidth_used: float | None
    bandwidth_capacity: float
    bandwidth_binding: bool
    revenue: float | None
    cost: float | None
    profit: float | None
    revenue_measured: float
    mean_qoe_modelled: float | None
    mean_qoe_measured: float | None
    trials_total: int
    power_w_total: float
    extra: dict = field(default_factory=dict)
    """The market result's other per-ASP fields."""
