"""Train the shipped models: ``python -m provisioning.backend.train {evaluator,generator,card,all}``.

What this module is for: the one script that makes every shipped weight file, so that the
model cards' numbers can be reproduced. Generators are class-conditional diffusers
``UNet2DModel`` denoisers trained with the standard DDPM epsilon objective
(``DDPMScheduler.add_noise``, MSE on the noise), class labels dropped to the null class
with probability ``class_dropout`` (classifier-free guidance), EMA of the weights
(``diffusers.training_utils.EMAModel``). Training is fixed-length (``--train-steps``), not
time-budgeted, so the same command and seed give the same weights on the same machine.

Examples::

    nice python -m provisioning.backend.train evaluator --seed 0
    nice python -m provisioning.backend.train generator --model digits-large --train-steps 1500 --seed 0
    nice python -m provisioning.backend.train card --model digits-large      # measure and write the card

May import: torch, diffusers, numpy, ``market`` (errors, atomic IO).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .models import MODEL_NAMES, MODELS_DIR


@dataclass
class GeneratorTrainConfig:
    """How one generator is trained."""

    model: str = "digits-large"
    """Shipped size name (``digits-small|medium|large``)."""
    seed: int = 0
    """Seed of torch (initialisation, batches, noise, timesteps, label dropout)."""
    train_steps: int = 1200
    """Optimiser steps (fixed, so the run is reproducible)."""
    batch_size: int = 64
    """Images per optimiser step."""
    learning_rate: float = 2e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay to 0)."""
    warmup_steps: int = 50
    """Warm-up optimiser steps."""
    class_dropout: float = 0.1
    """Probability that a training label is replaced by the null class."""
    ema_decay: float = 0.999
    """Maximum EMA decay (with diffusers' EMA warm-up)."""
    threads: int = 1
    """torch threads (the project's machine has 2 shared cores)."""
    default_steps: int = 10
    """Default DDIM sampling steps recorded in backend.json."""
    guidance_scale: float = 1.0
    """Default classifier-free guidance recorded in backend.json."""


def train_generator(config: GeneratorTrainConfig, out_dir: Path | None = None) -> dict:
    """Train one generator and save it in the shipped layout; returns the training record."""
    import math

    import torch
    from diffusers.training_utils import EMAModel

    from market.atomic import atomic_write_json

    from .data import NUM_CLASSES, load_split
    from .models import build_unet, save_shipped_model, training_scheduler

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    out_dir = Path(out_dir or MODELS_DIR / config.model)
    split = load_split()
    images = torch.as_tensor(split.train_images)
    labels = torch.as_tensor(split.train_labels)
    unet = build_unet(config.model)
    noise_schedule = training_scheduler()
    ema = EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=2 / 3)
    opt = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate, weight_decay=1e-4)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.train_steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    start = time.perf_counter()
    losses = []
    unet.train()
    for step in range(config.train_steps):
        idx = torch.randint(0, len(images), (config.batch_size,), generator=gen)
        x0, y = images[idx], labels[idx].clone()
        drop = torch.rand(config.batch_size, generator=gen) < config.class_dropout
        y[drop] = NUM_CLASSES
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (config.batch_size,), generator=gen)
        xt = noise_schedule.add_noise(x0, noise, t)
        loss = torch.nn.functional.mse_loss(unet(xt, t, class_labels=y).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.step(unet.parameters())
        losses.append(float(loss))
        if step % 100 == 0 or step == config.train_steps - 1:
            recent = sum(losses[-100:]) / len(losses[-100:])
            print(f"[{config.model}] step {step + 1}/{config.train_steps} loss {recent:.4f} "
                  f"{time.perf_counter() - start:.0f}s", flush=True)
    ema.copy_to(unet.parameters())
    unet.eval()
    train_time = time.perf_counter() - start
    save_shipped_model(unet, config.model, out_dir, default_steps=config.default_steps,
                       guidance_scale=config.guidance_scale)
    record = {
        "name": config.model,
        "parameters": int(sum(p.numel() for p in unet.parameters())),
        "weights_bytes": (out_dir / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size,
        "train_time_s": round(train_time, 1),
        "final_loss_last100": round(sum(losses[-100:]) / len(losses[-100:]), 5),
        "hardware": _hardware(),
        "data": "scikit-learn load_digits (bundled), training part of the seed-0 70/30 stratified split "
                "(1257 images), 8x8 upsampled bilinearly to 16x16, pixels in [-1, 1]",
        "config": asdict(config),
        "command": (f"nice python -m provisioning.backend.train generator --model {config.model} "
                    f"--train-steps {config.train_steps} --seed {config.seed}"),
    }
    atomic_write_json(out_dir / "training.json", record)
    return record


def _hardware() -> dict:
    import torch

    return {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "note": "project machine: 2 cores shared with other jobs, process niced",
    }


def write_card(name: str, samples: int = 100, seed: int = 0) -> dict:
    """Measure a trained model (accuracy, tokens, latency at its default steps) and write its card."""
    from market.atomic import atomic_write_json, atomic_write_text

    from .measurement import MeasureConfig, measure
    from .models import load_model

    model = load_model(name, device="cpu")
    out_dir = MODELS_DIR / name
    training = json.loads((out_dir / "training.json").read_text())
    rows = {}
    for guidance in (1.0, 2.0):
        cfg = MeasureConfig(model=name, steps=model.default_steps, trials=1, ber=0.0,
                            samples=samples, seed=seed, guidance_scale=guidance)
        rows[f"guidance_{guidance:g}"] = measure(model, cfg).to_dict()
    default = rows[f"guidance_{model.guidance_scale:g}"]
    card = {
        "name": name,
        "architecture": "diffusers UNet2DModel, class-conditional (11 class embeddings: digits 0-9 + null), "
                        "1x16x16 pixel space, DDPM epsilon objective, DDIM sampling",
        **{k: training[k] for k in ("parameters", "weights_bytes", "train_time_s", "final_loss_last100",
                                    "data", "hardware", "config")},
        "training_command": training["command"],
        "default_steps": model.default_steps,
        "default_guidance_scale": model.guidance_scale,
        "measured": {
            "accuracy": default["accuracy"], "accuracy_ci95": default["accuracy_ci95"],
            "latency_s": default["latency_s"], "latency_ci95": default["latency_ci95"],
            "cpu_s_per_request": default["cpu_s"], "cpu_seconds_per_token": default["cpu_seconds_per_token"],
            "latency_note": "wall-clock on the project's 2-core machine shared with other jobs; "
                            "cpu_s_per_request is this process's CPU time, the work itself",
            "load_average_1min_after": round(os.getloadavg()[0], 2),
            "tokens": default["tokens"], "bits": default["bits"], "samples": samples, "seed": seed,
            "device": default["device"], "judge": "models/evaluator judge CNN (held-out accuracy in its card)",
            "by_guidance": {k: {"accuracy": v["accuracy"], "latency_s": v["latency_s"]} for k, v in rows.items()},
        },
        "measure_command": (f"incentive backend measure --model {name} --steps {model.default_steps} "
                            f"--trials 1 --ber 0 --samples {samples} --seed {seed}"),
        "card_command": f"python -m provisioning.backend.train card --model {name} --samples {samples} --seed {seed}",
    }
    atomic_write_json(out_dir / "card.json", card)
    md = [f"# Model card: {name}", ""]
    for key, value in card.items():
        md.append(f"- **{key}**: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    atomic_write_text(out_dir / "card.md", "\n".join(md) + "\n")
    return card


def main(argv: list[str] | None = None) -> int:
    """Command line of the training script (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m provisioning.backend.train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    ev = sub.add_parser("evaluator", help="train the judge CNN and the scorer")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--epochs", type=int, default=60)
    gen = sub.add_parser("generator", help="train one generator")
    gen.add_argument("--model", choices=MODEL_NAMES, required=True)
    gen.add_argument("--train-steps", type=int, default=1200)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--default-steps", type=int, default=10)
    gen.add_argument("--guidance-scale", type=float, default=1.0)
    card = sub.add_parser("card", help="measure a trained generator and write its card")
    card.add_argument("--model", choices=MODEL_NAMES, required=True)
    card.add_argument("--samples", type=int, default=100)
    card.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.what == "evaluator":
        from .evaluator import EvaluatorTrainConfig, train_evaluator

        print(json.dumps(train_evaluator(EvaluatorTrainConfig(seed=args.seed, epochs=args.epochs)), indent=2))
    elif args.what == "generator":
        cfg = GeneratorTrainConfig(model=args.model, seed=args.seed, train_steps=args.train_steps,
                                   default_steps=args.default_steps, guidance_scale=args.guidance_scale)
        print(json.dumps(train_generator(cfg), indent=2))
    elif args.what == "card":
        print(json.dumps(write_card(args.model, samples=args.samples, seed=args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
