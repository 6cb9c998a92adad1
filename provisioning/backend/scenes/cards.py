"""Model cards of the shipped scene generators: what training recorded plus what was measured.

What this module is for: ``python -m provisioning.backend.scenes.train card --model NAME``
measures a shipped scene generator (attribute match on fully specified prompts at its
default steps and guidance, judged by the scene judge; CPU latency per image) and writes
``card.json`` / ``card.md`` next to its weights, from its ``training.json``.

May import: numpy, torch, ``market`` (atomic IO), this package.
"""
from __future__ import annotations

import json
import os

from .generator import SCENE_MODELS_DIR


def write_generator_card(name: str, samples: int = 200, seed: int = 0) -> dict:
    """Measure a shipped scene generator and write its card; returns the card."""
    from market.atomic import atomic_write_json, atomic_write_text

    from .experiments import attribute_match
    from .generator import load_scene_model
    from .judge import load_judge

    model = load_scene_model(name, device="cpu")
    judge = load_judge("cpu")
    out_dir = SCENE_MODELS_DIR / name
    training = json.loads((out_dir / "training.json").read_text())
    measured = attribute_match(model, judge, samples=samples, steps=model.default_steps, seed=seed)
    card = {
        "name": name,
        "architecture": "diffusers UNet2DConditionModel on 12x16x16 (pixel-unshuffled 32x32 RGB), cross-attention "
                        "on MiniLM token states (encoder_hid_dim 384, text_proj) and their masked mean as a projection class "
                        "embedding (the pooled text vector), DDPM epsilon objective, "
                        "DDIM sampling with classifier-free guidance / negative prompt",
        "tokens": 64, "patch": "4x4 pixels of the 32x32 output",
        **{k: training[k] for k in ("parameters", "weights_bytes", "train_steps", "images_seen", "train_cpu_s",
                                    "train_wall_s", "final_mse_last100", "data", "hardware", "config")},
        "training_command": training["command"],
        "export_command": training.get("export_command"),
        "default_steps": model.default_steps, "default_guidance_scale": model.guidance_scale,
        "measured": {**measured, "judge": "scene-judge (held-out accuracy in its card)",
                     "load_average_1min_after": round(os.getloadavg()[0], 2)},
        "card_command": f"python -m provisioning.backend.scenes.train card --model {name} --samples {samples} "
                        f"--seed {seed}",
    }
    atomic_write_json(out_dir / "card.json", card)
    lines = [f"# Model card: {name}", "", "![loss curve](loss_curve.png)", ""]
    lines += [f"- **{k}**: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in card.items()]
    atomic_write_text(out_dir / "card.md", "\n".join(lines) + "\n")
    return card
