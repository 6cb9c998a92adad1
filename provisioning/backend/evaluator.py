"""The judge and the scorer: two classifiers of digit images, trained apart from the generators.

What this module is for: *accuracy* of a generated image is whether an independent
classifier (the **judge**, a small torch CNN) assigns it to the requested digit. Best-of-N
*trial selection* uses a different classifier (the **scorer**, a multinomial logistic
regression on the 8x8 average-pooled image, fitted with scikit-learn). Selecting with the
judge itself would make best-of-N accuracy trivially approach 1 (the selector and the
referee would be the same); with a separate, weaker scorer, selection helps only as far as
the two classifiers agree, which is the honest measurement of what more trials buy.

Both are trained on the training part of :func:`provisioning.backend.data.load_split`;
the judge's own accuracy is measured on the held-out part and stored in its card.
Weights are shipped as safetensors under ``models/evaluator``.

May import: numpy, torch, safetensors, scikit-learn, ``market`` (errors, atomic IO).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from market.errors import MissingArtifactError

#: Folder with the shipped judge and scorer.
EVALUATOR_DIR = Path(__file__).resolve().parent / "models" / "evaluator"


def _judge_net():
    """The judge architecture: 2 conv layers + linear head on 1x16x16 inputs (about 10k parameters)."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(32 * 4 * 4, 10),
    )


@dataclass
class EvaluatorTrainConfig:
    """How the judge and scorer are trained."""

    seed: int = 0
    """Seed of torch (initialisation, batches, augmentation)."""
    epochs: int = 60
    """Passes over the training digits for the judge."""
    batch_size: int = 64
    """Judge mini-batch size."""
    learning_rate: float = 2e-3
    """Adam learning rate of the judge."""
    augment_shift_px: int = 1
    """Random translation (pixels, each axis) applied to training images."""
    augment_noise_std: float = 0.1
    """Std of Gaussian noise added to training images (in [-1, 1] units)."""
    scorer_c: float = 0.5
    """Inverse L2 strength of the logistic-regression scorer."""


class Evaluator:
    """Judge (CNN) and scorer (logistic regression) for 1x16x16 digit images in [-1, 1].

    Parameters
    ----------
    judge : torch.nn.Module
        The CNN; ``judge(x)`` gives logits ``(n, 10)``.
    scorer_coef : np.ndarray
        ``(10, 64)`` logistic-regression weights on the 8x8 average-pooled image.
    scorer_intercept : np.ndarray
        ``(10,)`` intercepts.
    card : dict
        Training settings and measured accuracies.
    """

    def __init__(self, judge, scorer_coef: np.ndarray, scorer_intercept: np.ndarray, card: dict):
        self.judge = judge.eval()
        self.scorer_coef = np.asarray(scorer_coef, dtype=np.float64)
        self.scorer_intercept = np.asarray(scorer_intercept, dtype=np.float64)
        self.card = card

    # -- judge ---------------------------------------------------------------------------
    def judge_probs(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, 10)`` of the judge for images ``(n, 1, 16, 16)``."""
        import torch

        with torch.no_grad():
            x = torch.as_tensor(np.asarray(images, dtype=np.float32)).cpu()
            return torch.softmax(self.judge(x), dim=1).numpy().astype(np.float64)

    def judge_labels(self, images: np.ndarray) -> np.ndarray:
        """The judge's predicted digit per image, ``(n,)`` int."""
        return self.judge_probs(images).argmax(axis=1)

    # -- scorer --------------------------------------------------------------------------
    def scorer_probs(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, 10)`` of the scorer (logistic regression on 8x8 pooled)."""
        feats = pooled_features(images)
        logits = feats @ self.scorer_coef.T + self.scorer_intercept
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def score(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Quality score in [0, 1] of each image for its requested digit: the scorer's probability."""
        probs = self.scorer_probs(images)
        return probs[np.arange(len(probs)), np.asarray(labels, dtype=np.int64)]


def pooled_features(images: np.ndarray) -> np.ndarray:
    """2x2 average pooling of ``(n, 1, 16, 16)`` images to ``(n, 64)`` features."""
    x = np.asarray(images, dtype=np.float64).reshape(-1, 8, 2, 8, 2)
    return x.mean(axis=(2, 4)).reshape(-1, 64)


def train_evaluator(config: EvaluatorTrainConfig, out_dir: Path = EVALUATOR_DIR) -> dict:
    """Train judge and scorer on the training digits, measure them, and save them.

    Returns the card (also written to ``out_dir/card.json``): held-out accuracy of judge
    and scorer, accuracy on uniform noise, training time, settings.
    """
    import torch
    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_torch
    from sklearn.linear_model import LogisticRegression

    from market.atomic import atomic_write_json, atomic_write_text

    from .data import load_split

    start = time.perf_counter()
    split = load_split()
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    net = _judge_net()
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    x_all = torch.as_tensor(split.train_images)
    y_all = torch.as_tensor(split.train_labels)
    n = len(x_all)
    s = config.augment_shift_px
    for _epoch in range(config.epochs):
        net.train()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, config.batch_size):
            idx = order[i : i + config.batch_size]
            x = x_all[idx]
            if s:
                dx, dy = (int(v) for v in torch.randint(-s, s + 1, (2,), generator=gen))
                x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            x = x + config.augment_noise_std * torch.randn(x.shape, generator=gen)
            loss = torch.nn.functional.cross_entropy(net(x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    scorer = LogisticRegression(C=config.scorer_c, max_iter=2000)
    scorer.fit(pooled_features(split.train_images), split.train_labels)
    evaluator = Evaluator(net, scorer.coef_, scorer.intercept_, card={})
    rng = np.random.default_rng(config.seed)
    noise = rng.uniform(-1, 1, size=(1000, 1, 16, 16)).astype(np.float32)
    noise_labels = rng.integers(0, 10, size=1000)
    card = {
        "what": "judge (CNN, accuracy) and scorer (logistic regression, best-of-N selection) for digits-* models",
        "data": "scikit-learn load_digits, 8x8 upsampled bilinearly to 16x16, stratified split seed 0, 70% train / 30% held out",
        "judge_parameters": int(sum(p.numel() for p in net.parameters())),
        "judge_accuracy_held_out": float((evaluator.judge_labels(split.test_images) == split.test_labels).mean()),
        "judge_accuracy_train": float((evaluator.judge_labels(split.train_images) == split.train_labels).mean()),
        "judge_accuracy_uniform_noise": float((evaluator.judge_labels(noise) == noise_labels).mean()),
        "scorer_accuracy_held_out": float(
            (evaluator.scorer_probs(split.test_images).argmax(1) == split.test_labels).mean()
        ),
        "held_out_size": int(len(split.test_labels)),
        "train_time_s": round(time.perf_counter() - start, 2),
        "torch_threads": torch.get_num_threads(),
        "config": asdict(config),
        "command": f"python -m provisioning.backend.train evaluator --seed {config.seed} --epochs {config.epochs}",
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_torch({k: v.contiguous() for k, v in net.state_dict().items()}, str(out_dir / "judge.safetensors"))
    save_np(
        {"coef": np.ascontiguousarray(scorer.coef_), "intercept": np.ascontiguousarray(scorer.intercept_)},
        str(out_dir / "scorer.safetensors"),
    )
    atomic_write_json(out_dir / "card.json", card)
    atomic_write_text(out_dir / "card.md", _card_md(card))
    return card


def _card_md(card: dict) -> str:
    lines = ["# Evaluator card (judge + scorer)", ""]
    for key, value in card.items():
        lines.append(f"- **{key}**: {value}")
    return "\n".join(lines) + "\n"


_CACHE: dict[str, Evaluator] = {}


def load_evaluator(path: str | Path = EVALUATOR_DIR) -> Evaluator:
    """Load the shipped judge and scorer (cached per folder).

    Raises
    ------
    MissingArtifactError
        When the weights are not there; the message gives the command that trains them.
    """
    from safetensors.numpy import load_file as load_np
    from safetensors.torch import load_file as load_torch

    path = Path(path)
    key = str(path.resolve())
    if key in _CACHE:
        return _CACHE[key]
    needed = [path / "judge.safetensors", path / "scorer.safetensors", path / "card.json"]
    for file in needed:
        if not file.is_file():
            raise MissingArtifactError(
                f"{file}: evaluator weights missing; make them with "
                "`python -m provisioning.backend.train evaluator`"
            )
    net = _judge_net()
    net.load_state_dict(load_torch(str(path / "judge.safetensors")))
    scorer = load_np(str(path / "scorer.safetensors"))
    card = json.loads((path / "card.json").read_text())
    evaluator = Evaluator(net, scorer["coef"], scorer["intercept"], card)
    _CACHE[key] = evaluator
    return evaluator
