"""The paper's Figs. 8-14 for the denoising problem, as PNG files with their numbers in JSON.

What this module is for: Du et al., "User-Centric Interactive AI for Distributed Diffusion
Model-based AI-Generated Content", section 5:

- Fig. 8 analogue: one device image per BER level (server prompt of one user, device prompt of
  another, fixed ``t0``, ``t_k``), each with the QoE the GA1 and GA2 evaluators give it;
- Fig. 9 analogue: a grid over ``t0`` (rows) and ``t_k`` (columns) on a perfect link, scored alike;
- Fig. 10: evaluator consistency (:mod:`.consistency`);
- Fig. 11: test reward curves per learner (validation states of the held-out users), mean and
  spread over seeds, as a fraction of the optimum;
- Fig. 12: the allocation each policy chooses in the first held-out state (``t0``, ``t_k``, ``P_k``);
- Figs. 13-14: a device's QoE over ``(t0, t_k)`` and over the BER level in that state, with the
  optimal and the learned (G-DDPG, seed 0) allocation marked.

Figs. 8, 9, 13 and 14 read images through the generation cache (generating what is missing);
11 and 12 read the JSON of ``incentive denoise evaluate``. Every figure is written atomically.

May import: numpy, matplotlib (through ``market.atomic.headless_pyplot``), ``market`` (errors, atomic IO), this package.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from market.atomic import headless_pyplot
from market.errors import UserError

from .evaluators import GA1, GA2
from .problem import User, device_qoe, draw_state, link_ber, reachable_ber_levels

#: Policy colours and markers shared by every figure.
STYLE = {"optimum": ("black", "*"), "gddpg": ("tab:red", "o"), "ddpg": ("tab:blue", "x"), "td3": ("tab:green", "s"),
         "sac": ("tab:purple", "^"), "random": ("tab:grey", "d"), "local": ("tab:olive", "v")}


def _save(fig, out: Path, name: str, data: dict) -> Path:
    from market.atomic import atomic_write_json, atomic_write_png, json_ready

    atomic_write_json(out / f"{name}.json", json_ready(data))
    return atomic_write_png(out / f"{name}.png", fig)


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.clip((np.transpose(image, (1, 2, 0)) + 1.0) / 2.0, 0.0, 1.0)


def read_evaluation(path) -> dict:
    """The JSON of ``denoise evaluate --out`` (one-line errors naming the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({exc})") from None
    for field in ("problem", "policies", "held_out_state_seeds"):
        if field not in data:
            raise UserError(f"{path}: field '{field}' missing; not written by `incentive denoise evaluate --out`")
    return data


def check_same_problem(evaluation: dict, problem, path) -> None:
    """Refuse to mark allocations of another problem (generator, grid or users)."""
    if evaluation["problem"] != problem.identity():
        raise UserError(f"{path}: field 'problem' is {evaluation['problem']!r}, but these options give "
                        f"{problem.identity()!r}; pass the generator, grid and users of that evaluation")


# ------------------------------------------------------------------------------------ Figs. 8 and 9


def _pair(problem):
    """(server user, device user) of Figs. 8-9: the first two training users."""
    users = problem.train_users
    return (users[1], users[0]) if len(users) > 1 else (users[0], users[0])


def _scored(problem, server: User, device: User, cells: list) -> list[dict]:
    """Image and GA1/GA2 QoE of ``cells`` = [(t0, t_k, ber)] for ``device``'s prompt under ``server``'s."""
    from .generation import GenerationKey
    from .problem import DenoiseState

    judges = [server, User("GA1", device.prompt, GA1), User("GA2", device.prompt, GA2)]
    # gains and budgets play no part in scoring an image
    state = DenoiseState(judges, np.zeros(len(judges)), 0, np.full(len(judges), problem.config.device_budget[0]))
    rows = []
    for t0, tk, ber in cells:
        scores = problem.table.qoe(state, [(1, t0, tk, ber), (2, t0, tk, ber)])
        image = problem.table.cache.image(GenerationKey.of(server.prompt, device.prompt, t0, tk, ber, 0))
        rows.append({"t0": t0, "tk": tk, "ber": ber, "GA1": float(scores[0]), "GA2": float(scores[1]), "image": image})
    return rows


def _grid_figure(rows: list, shape: tuple, titles, suptitle: str):
    plt = headless_pyplot()
    fig, axes = plt.subplots(*shape, figsize=(max(6.0, 1.45 * shape[1]), 1.75 * shape[0] + 0.6), squeeze=False,
                             constrained_layout=True)
    for ax, row, title in zip(axes.ravel(), rows, titles):
        ax.imshow(_rgb(row["image"]), interpolation="nearest")
        ax.set_title(f"{title}\nGA1 {row['GA1']:.2f} GA2 {row['GA2']:.2f}", fontsize=6)
        ax.axis("off")
    fig.suptitle(suptitle, fontsize=7)
    return fig


def fig8(problem, out: Path) -> Path:
    """Device images over the BER levels at the middle positive ``t0`` and middle ``t_k``."""
    cfg = problem.config
    server, device = _pair(problem)
    positive = [t for t in cfg.t0_grid if t > 0] or [0]
    t0, tk = positive[len(positive) // 2], cfg.tk_grid[len(cfg.tk_grid) // 2]
    bers = [0.0] + [b for b in reachable_ber_levels(cfg) if b > 0]
    rows = _scored(problem, server, device, [(t0, tk, b) for b in bers])
    fig = _grid_figure(rows, (1, len(rows)), [f"BER {b:g}" for b in bers],
                       f"Fig. 8: server '{server.prompt}' ({t0} steps),\ndevice '{device.prompt}' ({tk} steps)")
    return _save(fig, out, "fig8_ber_grid", {"server": server.prompt, "device": device.prompt,
                                             "rows": [{k: v for k, v in r.items() if k != "image"} for r in rows]})


def fig9(problem, out: Path) -> Path:
    """Device images over ``t0`` (rows) and ``t_k`` (columns) on a perfect link."""
    cfg = problem.config
    server, device = _pair(problem)
    cells = [(t0, tk, 0.0) for t0 in cfg.t0_grid for tk in cfg.tk_grid]
    rows = _scored(problem, server, device, cells)
    fig = _grid_figure(rows, (len(cfg.t0_grid), len(cfg.tk_grid)), [f"t0={a} tk={b}" for a, b, _ in cells],
                       f"Fig. 9: server '{server.prompt}',\ndevice '{device.prompt}', BER 0")
    return _save(fig, out, "fig9_steps_grid", {"server": server.prompt, "device": device.prompt,
                                               "rows": [{k: v for k, v in r.items() if k != "image"} for r in rows]})


# ------------------------------------------------------------------------------------------ Fig. 10


def fig10(judge, out: Path, seeds: int = 200) -> Path:
    """Evaluator consistency: GA1/GA2 x two rendered images x ``seeds`` seeds."""
    from .consistency import consistency, rendered_pair

    plt = headless_pyplot()
    images, own, other = rendered_pair()
    rows = consistency(judge, images, own, other, seeds=seeds)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for row, colour in zip(rows, ("tab:blue", "tab:cyan", "tab:red", "tab:orange")):
        ax.scatter(range(len(row["scores"])), row["scores"], s=6, color=colour,
                   label=f"{row['personality']} image {row['image']}: {row['mean']:.2f} +/- {row['sd']:.2f}")
    ax.set_xlabel("seed")
    ax.set_ylabel("QoE")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out, "fig10_consistency", {"own_prompt": own, "other_prompt": other, "rows": rows})


# ---------------------------------------------------------------------------------- Figs. 11 and 12


def fig11(evaluation: dict, out: Path) -> Path:
    """Test reward curves (fraction of the optimum on validation states), mean +/- sd over seeds."""
    plt = headless_pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    data = {}
    for name, row in evaluation["policies"].items():
        curves = [c for c in row.get("curves") or [] if c]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        steps = [p["step"] for p in curves[0][:length]]
        values = np.array([[p["fraction_of_optimum"] if p["fraction_of_optimum"] is not None else np.nan
                            for p in c[:length]] for c in curves], dtype=float)
        mean, sd = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        colour, marker = STYLE.get(name, ("k", "."))
        ax.plot(steps, mean, color=colour, marker=marker, markersize=3, label=f"{name} ({len(curves)} seeds)")
        ax.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.15)
        data[name] = {"step": steps, "mean": mean, "sd": sd}
    for level, style in ((1.0, "-"), (0.95, ":")):
        ax.axhline(level, color="black", linestyle=style, linewidth=0.8)
    ax.set_xlabel("training step")
    ax.set_ylabel("test reward / optimum's")
    ax.set_title("Fig. 11: test reward on held-out users (mean +/- sd over seeds)", fontsize=8)
    ax.legend(fontsize=7)
    return _save(fig, out, "fig11_test_reward", data)


def fig12(evaluation: dict, out: Path, state_index: int = 0) -> Path:
    """The allocation each policy (seed 0) chooses in held-out state ``state_index``."""
    plt = headless_pyplot()
    names = [n for n in ("optimum", "gddpg", "ddpg", "td3", "sac", "random", "local") if n in evaluation["policies"]]
    chosen = {n: evaluation["policies"][n]["decisions"][0][state_index] for n in names}
    devices = len(chosen[names[0]]["tk"])
    fig, (steps_ax, power_ax) = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        d, (colour, _) = chosen[name], STYLE.get(name, ("k", "."))
        steps_ax.bar(np.arange(devices + 1) + j * width, [d["t0"]] + d["tk"], width, color=colour,
                     label=f"{name} (reward {d['reward']:.2f})")
        power_ax.bar(np.arange(devices) + j * width, d["power_dbw"], width, color=colour)
    budgets = chosen[names[0]].get("device_budget")
    if budgets is not None:  # E_k / delta_k: the most steps device k may run (22)
        for k, budget in enumerate(budgets):
            steps_ax.hlines(budget, k + 1 - 0.05, k + 1 + 0.8, colors="k", linestyles=":", linewidth=1,
                            label="E_k (delta_k = 1)" if k == 0 else None)
    steps_ax.set_xticks(np.arange(devices + 1) + 0.4 - width / 2, ["t0"] + [f"t_{k + 1}" for k in range(devices)])
    power_ax.set_xticks(np.arange(devices) + 0.4 - width / 2, [f"P_{k + 1}" for k in range(devices)])
    steps_ax.set_ylabel("denoising steps")
    power_ax.set_ylabel("transmit power (dBW)")
    steps_ax.legend(fontsize=6)
    fig.suptitle(f"Fig. 12: allocation in held-out state {state_index} (seed 0 of each learner)", fontsize=8)
    return _save(fig, out, "fig12_allocation", {"state_index": state_index, "chosen": chosen})


# ---------------------------------------------------------------------------------- Figs. 13 and 14


def _held_out_state(problem, evaluation: dict, state_index: int):
    return draw_state(problem.config, problem.test_users, int(evaluation["held_out_state_seeds"][state_index]))


def fig13_14(problem, evaluation: dict, out: Path, state_index: int = 0) -> list[Path]:
    """QoE over ``(t0, t_k)`` (Fig. 13) and over the BER level (Fig. 14) per device of one held-out
    state, with the optimal and the G-DDPG (seed 0) allocation marked."""
    plt = headless_pyplot()
    cfg = problem.config
    state = _held_out_state(problem, evaluation, state_index)
    marked = {n: evaluation["policies"][n]["decisions"][0][state_index] for n in ("optimum", "gddpg", "ddpg")
              if n in evaluation["policies"]}
    best = marked["optimum"]
    K = cfg.devices
    fig13, axes13 = plt.subplots(1, K, figsize=(3.4 * K, 3.2), squeeze=False, constrained_layout=True)
    fig14, axes14 = plt.subplots(1, K, figsize=(3.4 * K, 3.2), squeeze=False, constrained_layout=True)
    bers = [0.0] + [b for b in reachable_ber_levels(cfg) if b > 0]
    data13, data14 = [], []

    def qoe(k, t0, tk, ber) -> float:  # the problem's QoE of one device (the reward's definition)
        return float(device_qoe(cfg, problem.table, state, [(k, t0, tk, ber)])[0])

    for k in range(K):
        ber_k = link_ber(cfg, state.gain_db[k], best["power_dbw"][k])
        grid = np.array([[qoe(k, t0, tk, ber_k if t0 > 0 else 0.0) for tk in cfg.tk_grid]
                         for t0 in cfg.t0_grid])
        ax = axes13[0, k]
        shown = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(cfg.tk_grid)), cfg.tk_grid)
        ax.set_yticks(range(len(cfg.t0_grid)), cfg.t0_grid)
        ax.set_xlabel("t_k")
        ax.set_ylabel("t0")
        ax.set_title(f"device {k + 1} ({state.users[k].name}), E_k {state.device_budget[k]:g}, BER {ber_k:g}", fontsize=7)
        for name, d in marked.items():
            colour, marker = STYLE[name]
            ax.plot(d["tk_index"][k], d["t0_index"], marker=marker, color="white" if name == "optimum" else colour,
                    markersize=11 if name == "optimum" else 8, markeredgecolor=colour, linestyle="", label=name)
        data13.append({"device": k, "user": state.users[k].name, "ber": ber_k, "qoe": grid})
        tk_best = best["tk"][k]
        curves = {t0: [qoe(k, t0, tk_best, b) for b in bers] for t0 in cfg.t0_grid if t0 > 0}
        no_server = qoe(k, 0, tk_best, 0.0)
        ax = axes14[0, k]
        ax.axhline(no_server, color="grey", linestyle="--", linewidth=0.8, label="t0=0 (no link)")
        for t0, values in curves.items():
            ax.plot(range(len(bers)), values, marker=".", label=f"t0={t0}")
        for name, d in marked.items():  # a policy's own (t0, t_k) outcome, at its link's BER level
            colour, marker = STYLE[name]
            x = bers.index(d["ber"][k]) if d["t0"] > 0 and d["ber"][k] in bers else 0
            ax.plot(x, d["qoe"][k], marker=marker, color=colour, markersize=10, linestyle="", markerfacecolor="none",
                    label=f"{name} (t0={d['t0']}, t_k={d['tk'][k]})")
        ax.set_xticks(range(len(bers)), ["0 (perfect)"] + [f"{b:g}" for b in bers[1:]], fontsize=6)
        ax.set_xlabel("BER level")
        ax.set_ylabel(f"QoE (t_k = {tk_best})")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"device {k + 1} ({state.users[k].name})", fontsize=7)
        ax.legend(fontsize=5)
        data14.append({"device": k, "user": state.users[k].name, "tk": tk_best, "bers": bers, "qoe": curves,
                       "qoe_without_server_steps": no_server})
    axes13[0, 0].legend(fontsize=6)
    fig13.colorbar(shown, ax=axes13[0, -1], label="QoE")
    fig13.suptitle(f"Fig. 13: QoE over t0 and t_k, held-out state {state_index} (link at the optimum's power)", fontsize=8)
    fig14.suptitle(f"Fig. 14: QoE over the BER level, held-out state {state_index}", fontsize=8)
    return [_save(fig13, out, "fig13_qoe_steps", {"state_index": state_index, "marked": marked, "devices": data13}),
            _save(fig14, out, "fig14_qoe_ber", {"state_index": state_index, "marked": marked, "devices": data14})]
