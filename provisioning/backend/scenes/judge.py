"""The scene judge: a multi-head attribute classifier trained on renders only, and a degradation score.

What this module is for: decide, for a generated 32x32 image, which scene, object, colour,
count, size, position, lighting and degradation it shows, so that accuracy against a
user's intent is measured by something trained separately from the generators (on the
renderer's images, never on generated ones). One small CNN (torch) with one linear head
per attribute; the degradation score is ``1 - P(degradation = none)``. Its held-out
accuracy per attribute on fresh renders is in its card.

Shipped folder ``scenes/models/scene-judge/``: ``judge.safetensors``, ``card.json``, ``card.md``.

May import: torch, safetensors, numpy, ``market`` (errors, atomic IO), ``.world``, ``.render``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from market.errors import MissingArtifactError

from .generator import SCENE_MODELS_DIR
from .world import ATTRIBUTES, VOCABULARY

JUDGE_DIR = SCENE_MODELS_DIR / "scene-judge"
#: Number of classes per head, in attribute order.
HEAD_SIZES: tuple[int, ...] = tuple(len(VOCABULARY[a]) for a in ATTRIBUTES)


def build_judge_net(width: int = 16):
    """The judge CNN: three conv stages (32x32 -> 4x4), a shared 256-unit layer, one head per attribute."""
    import torch
    from torch import nn

    class JudgeNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()

            def stage(cin, cout):
                return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]

            self.features = nn.Sequential(*stage(3, width), *stage(width, 2 * width), *stage(2 * width, 2 * width),
                                          nn.Flatten(), nn.Linear(2 * width * 16, 256), nn.ReLU())
            self.heads = nn.ModuleList([nn.Linear(256, k) for k in HEAD_SIZES])

        def forward(self, x) -> list:
            h = self.features(x)
            return [head(h) for head in self.heads]

    torch.manual_seed(0)
    return JudgeNet()


@dataclass
class JudgeTrainConfig:
    """How the judge is trained (saved in its card)."""

    seed: int = 0
    """Seed of the training renders, initialisation and batches (held-out renders use seed + 1000)."""
    train_images: int = 24_000
    """Training renders from the prior."""
    heldout_images: int = 4_000
    """Held-out renders (never trained on) for the per-attribute accuracy."""
    steps: int = 2500
    """Optimiser steps (batch 128, AdamW 2e-3, cosine decay)."""
    batch_size: int = 128
    threads: int = 1
    learning_rate: float = 2e-3
    """Peak AdamW rate (one-cycle schedule)."""
    width: int = 24
    """Channels of the first conv stage (the later stages have twice as many)."""
    init_from: str | None = None
    """A judge.safetensors to continue from (fine-tuning on fresh renders), or None."""


@dataclass
class JudgeReading:
    """What the judge reads on a batch of images."""

    labels: dict[str, list[str]]
    """Attribute -> predicted value per image."""
    confidence: dict[str, np.ndarray]
    """Attribute -> probability of the predicted value per image."""
    degradation_score: np.ndarray
    """``1 - P(none)`` per image, in [0, 1]."""


class SceneJudge:
    """A loaded judge (CPU or CUDA)."""

    def __init__(self, net, device: str = "cpu", card: dict | None = None):
        self.net = net.to(device).eval()
        self.device = device
        self.card = card or {}

    def probabilities(self, images, *, log: bool = False) -> dict[str, np.ndarray]:
        """Per attribute (in ``ATTRIBUTES`` order), ``(n, values)`` probabilities (log-probabilities
        with ``log``) of images ``(n, 3, 32, 32)`` float in [-1, 1]: the judge's one forward pass."""
        import torch

        x = torch.as_tensor(np.asarray(images, dtype=np.float32)).to(self.device)
        normalise = torch.log_softmax if log else torch.softmax
        with torch.inference_mode():
            return {attr: normalise(o.float(), dim=1).cpu().numpy() for attr, o in zip(ATTRIBUTES, self.net(x))}

    def read(self, images) -> JudgeReading:
        """Judge images ``(n, 3, 32, 32)`` float in [-1, 1] (numpy or torch)."""
        outs = list(self.probabilities(images).values())
        labels, conf = {}, {}
        for attr, probs in zip(ATTRIBUTES, outs):
            best = probs.argmax(axis=1)
            labels[attr] = [VOCABULARY[attr][i] for i in best]
            conf[attr] = probs[np.arange(len(best)), best]
        none = outs[ATTRIBUTES.index("degradation")][:, 0]
        return JudgeReading(labels=labels, confidence=conf, degradation_score=1.0 - none)


def load_judge(device: str = "cpu", folder: Path | None = None, width: int | None = None) -> SceneJudge:
    """The shipped judge (or the one in ``folder``); its width is read from its card unless given."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else JUDGE_DIR
    weights = folder / "judge.safetensors"
    if not weights.is_file():
        raise MissingArtifactError(f"{weights}: scene judge missing; train it with "
                                   "`python -m provisioning.backend.scenes.train judge`")
    card_file = folder / "card.json"
    card = json.loads(card_file.read_text()) if card_file.is_file() else {}
    net = build_judge_net(int(width if width is not None else card.get("config", {}).get("width", 16)))
    net.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    return SceneJudge(net, device, card)


def render_set(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` renders from the prior: images ``(n, 3, 32, 32)`` float32 in [-1, 1], attribute indices ``(n, 8)``."""
    from .render import render, to_model_space
    from .world import sample_description

    rng = np.random.default_rng(np.random.SeedSequence([seed, 29]))
    descriptions = [sample_description(rng) for _ in range(count)]
    images = np.stack([render(d, variant=seed * 1_000_003 + i) for i, d in enumerate(descriptions)])
    return to_model_space(images), np.stack([d.indices() for d in descriptions])


def heldout_accuracy(judge: SceneJudge, images: np.ndarray, attributes: np.ndarray) -> dict[str, float]:
    """Per-attribute accuracy of ``judge`` on labelled images."""
    read = judge.read(images)
    return {a: float(np.mean([VOCABULARY[a].index(v) for v in read.labels[a]] == attributes[:, k]))
            for k, a in enumerate(ATTRIBUTES)}


def train_judge(cfg: JudgeTrainConfig, out_dir: Path | None = None) -> dict:
    """Train the judge on fresh renders, measure it on held-out renders, write it with a card.

    ``out_dir`` defaults to the shipped folder; the held-out accuracy is also reported on the
    clean held-out renders alone (degradation ``none``), the domain a clean generation is judged in.
    """
    import torch
    from safetensors.torch import save_file

    from market.atomic import atomic_write_json, atomic_write_text

    torch.set_num_threads(cfg.threads)
    begin_wall, begin_cpu = time.perf_counter(), time.process_time()
    x_train, y_train = render_set(cfg.train_images, cfg.seed)
    x_test, y_test = render_set(cfg.heldout_images, cfg.seed + 1000)
    render_cpu = time.process_time() - begin_cpu
    net = build_judge_net(cfg.width)
    if cfg.init_from:
        from safetensors.torch import load_file

        net.load_state_dict({k: v.float() if v.dtype.is_floating_point else v
                             for k, v in load_file(cfg.init_from).items()})
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.learning_rate, total_steps=cfg.steps, pct_start=0.1)
    xt, yt = torch.as_tensor(x_train), torch.as_tensor(y_train)
    gen = torch.Generator().manual_seed(cfg.seed)
    net.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, len(xt), (cfg.batch_size,), generator=gen)
        outs = net(xt[idx])
        loss = sum(torch.nn.functional.cross_entropy(o, yt[idx, k]) for k, o in enumerate(outs))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            print(f"[judge] step {step} loss {float(loss.detach()):.4f}", flush=True)
    judge = SceneJudge(net, "cpu")
    accuracy = heldout_accuracy(judge, x_test, y_test)
    out_dir = Path(out_dir) if out_dir is not None else JUDGE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()
               if v.dtype.is_floating_point} | {k: v for k, v in net.state_dict().items()
                                                 if not v.dtype.is_floating_point},
              str(out_dir / "judge.safetensors"))
    reloaded = load_judge("cpu", out_dir, width=cfg.width)
    accuracy_fp16 = heldout_accuracy(reloaded, x_test, y_test)
    clean = y_test[:, ATTRIBUTES.index("degradation")] == VOCABULARY["degradation"].index("none")
    accuracy_clean = heldout_accuracy(reloaded, x_test[clean], y_test[clean])
    card = {
        "name": "scene-judge",
        "architecture": f"CNN 3 stages ({cfg.width}-{2 * cfg.width}-{2 * cfg.width} channels, BatchNorm, ReLU, "
                        "max-pool) -> 256 -> one linear head per attribute; degradation score = 1 - P(none)",
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "data": f"{cfg.train_images} renders from the prior (seed {cfg.seed}); held-out: {cfg.heldout_images} "
                f"renders with seed {cfg.seed + 1000} (other descriptions and variants); generated images never used",
        "heldout_accuracy": {k: round(v, 4) for k, v in accuracy_fp16.items()},
        "heldout_accuracy_fp32": {k: round(v, 4) for k, v in accuracy.items()},
        "heldout_accuracy_clean": {k: round(v, 4) for k, v in accuracy_clean.items()},
        "heldout_clean_images": int(clean.sum()),
        "goal": "each >= 0.98",
        "goal_met": all(v >= 0.98 for v in accuracy_fp16.values()),
        "train_cpu_s": round(time.process_time() - begin_cpu, 1), "render_cpu_s": round(render_cpu, 1),
        "train_wall_s": round(time.perf_counter() - begin_wall, 1),
        "config": asdict(cfg),
        "command": f"nice -n 5 python -m provisioning.backend.scenes.train judge --seed {cfg.seed} --steps {cfg.steps} "
                   f"--train-images {cfg.train_images} --learning-rate {cfg.learning_rate} --width {cfg.width}"
                   + (f" --init-from {cfg.init_from}" if cfg.init_from else "")
                   + (f" --out {out_dir}" if out_dir != JUDGE_DIR else ""),
    }
    atomic_write_json(out_dir / "card.json", card)
    md = ["# Model card: scene-judge", ""] + [
        f"- **{k}**: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in card.items()]
    atomic_write_text(out_dir / "card.md", "\n".join(md) + "\n")
    return card
