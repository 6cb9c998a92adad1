"""Command-line glue of the scene models for ``incentive backend measure``.

What this module is for: everything the front door needs to serve ``--model scenes-*``,
``--prompt``, ``--intent``, ``--negative-prompt`` and ``--list-models`` without scene
logic in ``incentive``: the extra arguments, the shipped-model listing, the checks that
exit 2 with a one-line message (unknown model, empty prompt, a prompt given to a digits
model), the warning naming intent words the judge cannot check, and the JSON report.

May import: ``market`` (errors, atomic IO), ``..models`` (names of the digits models), this package.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from market.errors import UserError

from .generator import SCENE_MODEL_NAMES, SCENE_MODELS_DIR


def add_scene_arguments(parser) -> None:
    """Add the scene options to the ``measure`` parser."""
    parser.add_argument("--prompt", default=None, help="text prompt (scene models)")
    parser.add_argument("--intent", default=None, help="what the user wants, judged (default: the prompt)")
    parser.add_argument("--negative-prompt", default="", help="guidance's other branch (scene models)")
    parser.add_argument("--list-models", action="store_true", help="list the shipped models and exit")


def is_scene_model(name: str) -> bool:
    """True for a shipped scene model name or a folder holding a scene model (backend.json kind "scenes")."""
    if name in SCENE_MODEL_NAMES:
        return True
    meta = Path(name) / "backend.json"
    return meta.is_file() and json.loads(meta.read_text()).get("kind") == "scenes"


def list_models() -> list[dict]:
    """Every shipped model: name, kind, whether its weights are present, parameters, default steps."""
    from ..models import MODEL_NAMES, MODELS_DIR

    rows = []
    for kind, names, root in (("digits", MODEL_NAMES, MODELS_DIR), ("scenes", SCENE_MODEL_NAMES, SCENE_MODELS_DIR)):
        for name in names:
            folder = root / name
            card = folder / "card.json"
            info = json.loads(card.read_text()) if card.is_file() else {}
            rows.append({"name": name, "kind": kind,
                         "weights": (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file(),
                         "parameters": info.get("parameters"),
                         "prompt": "text (scene, object, colour, count, size, position, lighting)"
                         if kind == "scenes" else "digit 0-9 (request i asks for i mod 10)"})
    return rows


def check_model_name(name: str) -> None:
    """Exit-2 error for a bare name (no path separator) that is not a shipped model; paths are
    left to the loaders, which say what is missing in the folder."""
    from ..models import MODEL_NAMES

    if name in MODEL_NAMES or name in SCENE_MODEL_NAMES or "/" in name or Path(name).is_dir():
        return
    raise UserError(f"--model: unknown model {name!r}; shipped: {', '.join(MODEL_NAMES + SCENE_MODEL_NAMES)} "
                    f"(or give a local model folder; `incentive backend measure --list-models` lists them)")


def check_digits_arguments(args) -> None:
    """Exit-2 error when scene-only options are given to a digits model."""
    for flag, value in (("--prompt", args.prompt), ("--intent", args.intent),
                        ("--negative-prompt", args.negative_prompt)):
        if value:
            raise UserError(f"{flag}: the digits model {args.model!r} takes no text (request i asks for digit i mod 10); "
                            f"use --model scenes-small or scenes-large")


def measure_scene_command(args) -> int:
    """Run ``incentive backend measure`` for a scene model; prints (and writes) the JSON."""
    from market.atomic import atomic_write_json

    from .generator import load_scene_model
    from .judge import load_judge
    from .measure import SceneMeasureConfig, measure_scene

    if args.prompt is None or not args.prompt.strip():
        raise UserError("--prompt: empty; a scene model needs a text prompt such as 'A grassland, with a red ball'")
    cfg = SceneMeasureConfig(prompt=args.prompt, intent=args.intent, negative_prompt=args.negative_prompt or "",
                             samples=args.samples, trials=args.trials, ber=args.ber, steps=args.steps,
                             seed=args.seed, guidance_scale=args.guidance)
    from .measure import intent_of

    _, unchecked = intent_of(cfg.intent if cfg.intent is not None else cfg.prompt)
    if unchecked:
        print(f"warning: the judge cannot check these intent words: {', '.join(unchecked)} "
              f"(they are passed to the model but not scored)", file=sys.stderr)
    model = load_scene_model(args.model, device=args.device)
    report = measure_scene(model, load_judge(str(model.device)), cfg).to_dict(per_request=args.per_request)
    if args.out:
        atomic_write_json(args.out, report)
    print(json.dumps(report, indent=2))
    return 0
