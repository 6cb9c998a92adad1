"""The market as numpy arrays: everything the QoE, follower and leader formulas need.

What this module is for: :class:`Market`, built once from a validated
:class:`market.scenario.Scenario` by :meth:`Market.from_scenario`. Per-ASP arrays have
length N, per-MU arrays length M; ``mu_asp[m]`` is the index of MU m's serving ASP (the
MU->ASP index map; ``"auto"`` is resolved here). Derived constants of the closed-form
follower (design note, "Followers") are precomputed:

* ``timeliness_compute_need`` x^f_m = w^T_m l_m c_{a(m)} / T_m  (compute units),
* ``timeliness_bandwidth_need`` x^b_m = w^T_m D_m / (e_m T_m)    (Hz),

so that QoE_m = ``qoe_ceiling``_m - x^f_m / f_m - x^b_m / b_m in the linear model.

Trials (the provisioning layer's best-of-N, ``docs/pipeline.md``): an optional per-MU
``trials`` N_m multiplies the MU's compute work (``compute_work_s`` = N_m l_m c_{a(m)}) and an
optional per-MU ``mu_accuracy`` (the measured best-of-N accuracy at N_m) replaces the ASP's
one-trial accuracy in the QoE. :meth:`Market.with_trials` makes such a market; the payload it
sets is the N_m outputs sent. A scenario file never sets them: without them (the default) the
market prices one generation, as the design note says.

May import: numpy and ``market.scenario`` / ``market.errors``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from market.scenario import ASP_FLOAT_FIELDS, MU_FLOAT_FIELDS, Scenario


@dataclass(frozen=True, eq=False)
class Market:
    """Array form of a scenario. Money, compute units, Hz, bits and seconds as in the file.

    Treat the arrays as read-only: derived constants (``qoe_ceiling``, the timeliness needs,
    ``utility_scale``) are computed once and cached. Use :meth:`with_money_scaled` or
    ``dataclasses.replace`` to make a changed market.
    """

    asp_names: tuple[str, ...]
    """ASP names, index n (a tuple, or any sequence such as a numpy array of str)."""
    mu_names: tuple[str, ...]
    """MU names, index m (a tuple, or any sequence such as a numpy array of str)."""
    mu_asp: np.ndarray
    """int (M,): index of each MU's serving ASP."""
    bandwidth_model: str
    """``"linear"`` or ``"shannon"``."""
    asp_cost: str
    """``"linear"`` or ``"quadratic"`` (compute cost k^f f^2)."""
    accuracy: np.ndarray
    """(N,) model accuracy A_n in [0, 1]."""
    seconds_per_token: np.ndarray
    """(N,) c_n, s per token at unit compute."""
    max_tokens: np.ndarray
    """(N,) l^max_n, tokens."""
    compute_capacity: np.ndarray
    """(N,) F_n, compute units."""
    bandwidth_capacity: np.ndarray
    """(N,) B_n, Hz."""
    compute_cost: np.ndarray
    """(N,) k^f_n, money per compute unit (per unit squared when quadratic)."""
    bandwidth_cost: np.ndarray
    """(N,) k^b_n, money per Hz."""
    weight_accuracy: np.ndarray
    """(M,) w^A."""
    weight_tokens: np.ndarray
    """(M,) w^L."""
    weight_timeliness: np.ndarray
    """(M,) w^T."""
    tokens_requested: np.ndarray
    """(M,) L_m, tokens."""
    deadline_s: np.ndarray
    """(M,) T_m, s."""
    payload_bits: np.ndarray
    """(M,) D_m, bits."""
    spectral_efficiency: np.ndarray
    """(M,) e_m, bit/s/Hz (linear model)."""
    snr_hz: np.ndarray
    """(M,) P g / N0 in Hz: Shannon rate b log2(1 + snr_hz / b); e_m = log2(1 + snr_hz / B_ref)."""
    value_per_qoe: np.ndarray
    """(M,) theta_m, money per QoE."""
    reward_min: np.ndarray
    """(M,) lower reward bound, money per QoE."""
    reward_max: np.ndarray
    """(M,) upper reward bound, money per QoE."""
    qoe_required: np.ndarray
    """(M,) QoE floor; NaN where none."""
    tolerance: float = 1e-6
    """Default certificate tolerance (from the scenario)."""
    max_iterations: int = 5000
    """Default iteration limit (from the scenario)."""
    seed: int = 0
    """Seed for randomised solvers."""
    name: str = "market"
    """Scenario name."""
    trials: np.ndarray | None = None
    """(M,) N_m, generations per request (best-of-N; ``None``: one). Multiplies the compute work;
    the payload of the N outputs is in ``payload_bits`` (see :meth:`with_trials`)."""
    mu_accuracy: np.ndarray | None = None
    """(M,) accuracy each MU receives (best-of-N at its trials and link); ``None``: A_{a(m)}."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_scenario(cls, scn: Scenario) -> "Market":
        """Build the arrays from a validated scenario (resolves ``asp = "auto"``)."""
        asps, mus = scn.asps, scn.mus
        nan = float("nan")
        asp_cols = {k: np.asarray([getattr(a, k) for a in asps], dtype=float) for k in ASP_FLOAT_FIELDS}
        mu_cols = {
            "weights.accuracy": [m.weights.accuracy for m in mus],
            "weights.tokens": [m.weights.tokens for m in mus],
            "weights.timeliness": [m.weights.timeliness for m in mus],
        }
        for key in MU_FLOAT_FIELDS:
            if not key.startswith("weights."):
                mu_cols[key] = [nan if getattr(m, key) is None else getattr(m, key) for m in mus]
        mu_cols = {k: np.asarray(v, dtype=float) for k, v in mu_cols.items()}
        index = scn.asp_index()
        mu_asp = np.fromiter((-1 if m.asp == "auto" else index[m.asp] for m in mus), dtype=np.intp, count=len(mus))
        return cls.from_columns(scn.market, tuple(a.name for a in asps), tuple(m.name for m in mus), mu_asp,
                                asp_cols, mu_cols)

    @classmethod
    def from_columns(cls, cfg, asp_names, mu_names, mu_asp: np.ndarray, asp: dict, mu: dict) -> "Market":
        """Build the arrays from validated columns (the columnar scenario format's path).

        ``cfg`` is the :class:`market.scenario.MarketConfig`; ``asp`` maps the float fields of
        :data:`market.scenario.ASP_RULES` to (N,) arrays, ``mu`` those of ``MU_RULES``
        (``"weights.accuracy"`` ...) to (M,) arrays with NaN for an absent optional value;
        ``mu_asp`` is the (M,) serving-ASP index, -1 for ``"auto"`` (resolved here: highest
        base QoE, ties to the lowest index). Vectorised: O(N + M) (O(N) per ``"auto"`` MU).
        """
        f = lambda a: np.asarray(a, dtype=float)  # noqa: E731
        accuracy, max_tokens = f(asp["accuracy"]), f(asp["max_tokens"])
        w_a, w_l, w_t = f(mu["weights.accuracy"]), f(mu["weights.tokens"]), f(mu["weights.timeliness"])
        tokens = f(mu["tokens_requested"])
        mu_asp = np.array(mu_asp, dtype=np.intp)
        auto = np.flatnonzero(mu_asp < 0)
        for chunk in np.array_split(auto, max(1, auto.size // 4096)) if auto.size else ():
            base = (w_a[chunk, None] * accuracy[None, :]
                    + w_l[chunk, None] * np.minimum(tokens[chunk, None], max_tokens[None, :]) / tokens[chunk, None]
                    + w_t[chunk, None])
            mu_asp[chunk] = np.argmax(base, axis=1)  # argmax takes the lowest index on ties
        b_ref = cfg.reference_bandwidth_hz
        power = f(asp["transmit_power_w"])
        eff_given = f(mu["spectral_efficiency"])
        with np.errstate(invalid="ignore", divide="ignore"):
            gain = cfg.path_loss_reference_gain * f(mu["distance_m"]) ** (-cfg.path_loss_exponent)
            snr_hz = np.where(np.isnan(eff_given), power[mu_asp] * gain / cfg.noise_psd_w_per_hz,
                              np.expm1(eff_given * np.log(2.0)) * b_ref)
        efficiency = np.log2(1.0 + snr_hz / b_ref)
        return cls(
            asp_names=asp_names,
            mu_names=mu_names,
            mu_asp=mu_asp,
            bandwidth_model=cfg.bandwidth_model,
            asp_cost=cfg.asp_cost,
            accuracy=accuracy,
            seconds_per_token=f(asp["seconds_per_token"]),
            max_tokens=max_tokens,
            compute_capacity=f(asp["compute_capacity"]),
            bandwidth_capacity=f(asp["bandwidth_capacity"]),
            compute_cost=f(asp["compute_cost"]),
            bandwidth_cost=f(asp["bandwidth_cost"]),
            weight_accuracy=w_a, weight_tokens=w_l, weight_timeliness=w_t,
            tokens_requested=tokens,
            deadline_s=f(mu["deadline_s"]),
            payload_bits=f(mu["payload_bits"]),
            spectral_efficiency=efficiency,
            snr_hz=snr_hz,
            value_per_qoe=f(mu["value_per_qoe"]),
            reward_min=f(mu["reward_min"]),
            reward_max=f(mu["reward_max"]),
            qoe_required=f(mu["qoe_required"]),
            tolerance=cfg.tolerance,
            max_iterations=cfg.max_iterations,
            seed=cfg.seed,
            name=cfg.name,
        )

    # ------------------------------------------------------------------ sizes and maps
    @property
    def n_asps(self) -> int:
        """N, the number of ASPs."""
        return len(self.asp_names)

    @property
    def n_mus(self) -> int:
        """M, the number of MUs."""
        return len(self.mu_names)

    @property
    def is_closed_form(self) -> bool:
        """True when the follower has the closed form (linear bandwidth, linear cost)."""
        return self.bandwidth_model == "linear" and self.asp_cost == "linear"

    def mus_of(self, asp: int) -> np.ndarray:
        """Indices of the MUs served by ASP ``asp``."""
        return np.flatnonzero(self.mu_asp == asp)

    def per_asp_sum(self, values: np.ndarray) -> np.ndarray:
        """Sum a per-MU array (M,) or (M, G) over each ASP's MUs -> (N,) or (N, G)."""
        values = np.asarray(values, dtype=float)
        if values.ndim == 1:
            return np.bincount(self.mu_asp, weights=values, minlength=self.n_asps)
        out = np.zeros((self.n_asps,) + values.shape[1:])
        np.add.at(out, self.mu_asp, values)
        return out

    # ------------------------------------------------------------------ derived constants
    @cached_property
    def tokens_delivered(self) -> np.ndarray:
        """(M,) l_m = min(L_m, l^max_{a(m)}), tokens."""
        return np.minimum(self.tokens_requested, self.max_tokens[self.mu_asp])

    @cached_property
    def qoe_accuracy(self) -> np.ndarray:
        """(M,) accuracy part w^A A_m (independent of the allocation); A_m = ``mu_accuracy`` when
        set, else the serving ASP's A_{a(m)}."""
        return self.weight_accuracy * self.accuracy_received

    @cached_property
    def accuracy_received(self) -> np.ndarray:
        """(M,) accuracy of what each MU receives: ``mu_accuracy`` when set, else A_{a(m)}."""
        return self.accuracy[self.mu_asp] if self.mu_accuracy is None else np.asarray(self.mu_accuracy, dtype=float)

    @cached_property
    def compute_work_s(self) -> np.ndarray:
        """(M,) N_m l_m c_{a(m)}: seconds of compute per request at unit compute share."""
        work = self.tokens_delivered * self.seconds_per_token[self.mu_asp]
        return work if self.trials is None else work * np.asarray(self.trials, dtype=float)

    @cached_property
    def qoe_tokens(self) -> np.ndarray:
        """(M,) token part w^L l_m / L_m (independent of the allocation)."""
        return self.weight_tokens * self.tokens_delivered / self.tokens_requested

    @cached_property
    def qoe_ceiling(self) -> np.ndarray:
        """(M,) QoE with infinite resources: w^A A + w^L l/L + w^T (an upper bound on QoE)."""
        return self.qoe_accuracy + self.qoe_tokens + self.weight_timeliness

    @cached_property
    def timeliness_compute_need(self) -> np.ndarray:
        """(M,) x^f_m = w^T N_m l_m c_{a(m)} / T_m (compute units): QoE loss is x^f / f."""
        return self.weight_timeliness * self.compute_work_s / self.deadline_s

    @cached_property
    def timeliness_bandwidth_need(self) -> np.ndarray:
        """(M,) x^b_m = w^T D_m / (e_m T_m) (Hz): QoE loss is x^b / b in the linear model."""
        return self.weight_timeliness * self.payload_bits / (self.spectral_efficiency * self.deadline_s)

    @cached_property
    def utility_scale(self) -> np.ndarray:
        """(M,) theta_m * max QoE: the scale relative to which regrets are judged (money)."""
        return self.value_per_qoe * np.maximum(self.qoe_ceiling, 1e-12)

    def with_money_scaled(self, factor: float) -> "Market":
        """The same market with every money quantity multiplied by ``factor`` (> 0)."""
        return replace(
            self,
            compute_cost=self.compute_cost * factor,
            bandwidth_cost=self.bandwidth_cost * factor,
            value_per_qoe=self.value_per_qoe * factor,
            reward_min=self.reward_min * factor,
            reward_max=self.reward_max * factor,
        )

    def with_trials(self, trials, accuracy=None, bits_per_output=None) -> "Market":
        """The same market with N_m generations per request (best-of-N).

        Parameters
        ----------
        trials : array (M,) of int >= 1
            Generations per request; the compute work is N_m times one generation's.
        accuracy : array (M,), optional
            Accuracy each MU receives at its trials (``None``: the ASP's one-trial accuracy).
        bits_per_output : array (M,), optional
            Bits of one output; the payload becomes ``N_m x bits_per_output`` (``None``: the
            market's one-generation ``payload_bits`` times N_m, computed from this market's
            payload divided by its current trials).
        """
        n = np.asarray(trials, dtype=float).reshape(-1)
        if n.shape != (self.n_mus,) or np.any(~np.isfinite(n)) or np.any(n < 1):
            raise ValueError(f"trials must be {self.n_mus} numbers >= 1")
        if bits_per_output is None:
            current = np.ones(self.n_mus) if self.trials is None else np.asarray(self.trials, dtype=float)
            bits_per_output = self.payload_bits / current
        acc = None if accuracy is None else np.clip(np.asarray(accuracy, dtype=float).reshape(-1), 0.0, 1.0)
        return replace(self, trials=n, mu_accuracy=acc, payload_bits=n * np.asarray(bits_per_output, dtype=float))

    def clip_rewards(self, rewards: np.ndarray) -> np.ndarray:
        """Project rewards onto the boxes [reward_min, reward_max]."""
        return np.clip(np.asarray(rewards, dtype=float), self.reward_min, self.reward_max)
