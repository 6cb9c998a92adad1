"""The demonstration dataset D of eq. (13): requests x strategies x power levels, scored.

What this module is for: for each of L_p demonstration requests, the optimizer's corpus
(:mod:`.corpus`), every strategy's engineered prompt (:mod:`.strategies`), ``images`` images
per strategy from a :class:`ImageGenerator`, each received at every power level
(:func:`.requests.ber_at_power`, bit flips) and scored by a :class:`.requests.Scorer`. The
record of request j is the paper's ``[p_j, p*_j, c_pj, Gamma(p*_j, Omega(p*_j), P)]``.

Seeds: request j's images come from ``SeedSequence([seed, j, k])`` (strategy k) and its
channel draws and a stochastic scorer's draws from ``SeedSequence([seed, j, k, 1000 + m])``
(power m; image s's score from ``derive_seed(seed, j, k, 1000 + m, s)``), so a request's rows do not
depend on which requests were built before it: an interrupted build resumes bit-exactly.

File (``.npz``, written atomically; ``FORMAT`` names the version)::

    format, config (JSON), raw[j], intent[j], threshold[j], strategies[k], powers_w[m], ber[m],
    prompt[j, k], negative_prompt[j, k], corpus[j] (JSON), scores[j, k, m, s] float32

The checkpoint (``<out>.partial.npz``) holds the finished requests' rows and the config; it is
used only when its config equals the new one, and deleted once the dataset is written.

Generators: :class:`SceneImageGenerator` runs a trained scene model (the public API of
``provisioning.backend.scenes``); :class:`RenderImageGenerator` is the test double that renders
the world description its prompt states (unstated attributes and degradations from the prior,
degradations named in the negative prompt avoided) -- what a perfect generator would produce.

May import: numpy, tqdm, ``market`` (atomic IO, errors), ``provisioning.backend.scenes``,
this package.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from market.atomic import atomic_write_bytes
from market.errors import UserError
from market.seeding import derive_seed
from provisioning.backend.scenes.world import DEGRADATION_PRIOR, DEGRADATIONS, VOCABULARY, SceneDescription, parse

from .corpus import PromptCorpus, PromptOptimizer
from .requests import LinkConfig, Request, Scorer, ber_at_power, receive
from .strategies import Strategy, apply_strategy

FORMAT = "prompting-dataset/1"


@runtime_checkable
class ImageGenerator(Protocol):
    """Text -> images ``(count, 3, 32, 32)`` float32 in [-1, 1], deterministic in ``seed``."""

    name: str

    def generate(self, prompt: str, negative_prompt: str, count: int, seed: int) -> np.ndarray:
        ...


class RenderImageGenerator:
    """Test double: renders what the prompt states (see the module docstring)."""

    name = "render"

    def generate(self, prompt: str, negative_prompt: str, count: int, seed: int) -> np.ndarray:
        from provisioning.backend.scenes.render import render, to_model_space

        stated = parse(prompt).description.specified()
        avoided = set(parse(negative_prompt).description.specified().values()) if negative_prompt else set()
        avoided |= {d for d in DEGRADATIONS if d != "none" and d in negative_prompt}
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 77]))
        images = []
        for _ in range(count):
            values = {a: stated.get(a) or str(rng.choice(VOCABULARY[a])) for a in VOCABULARY if a != "degradation"}
            prior = np.array([0.0 if d in avoided else p for d, p in zip(DEGRADATIONS, DEGRADATION_PRIOR)])
            values["degradation"] = stated.get("degradation") or str(DEGRADATIONS[rng.choice(4, p=prior / prior.sum())])
            images.append(render(SceneDescription(**values), variant=int(rng.integers(1 << 30))))
        return to_model_space(np.stack(images)).astype(np.float32)


class SceneImageGenerator:
    """A trained scene model (``scenes-small`` / ``scenes-large`` or a folder) behind :class:`ImageGenerator`."""

    def __init__(self, model: str = "scenes-large", steps: int | None = None, guidance_scale: float | None = None,
                 device: str | None = None):
        from provisioning.backend.scenes.generator import load_scene_model

        self.model = load_scene_model(model, device=device)
        self.name = self.model.name
        self.steps = int(steps or self.model.default_steps)
        self.guidance_scale = guidance_scale

    def generate(self, prompt: str, negative_prompt: str, count: int, seed: int) -> np.ndarray:
        from provisioning.backend.scenes.generator import denoise_scenes, from_latent, scene_noise

        x = scene_noise(count, seed, str(self.model.device))
        x = denoise_scenes(self.model, x, [prompt] * count, self.steps, guidance_scale=self.guidance_scale,
                           negative_prompt=negative_prompt)
        return from_latent(x).clamp(-1, 1).float().cpu().numpy()


@dataclass
class DatasetConfig:
    """What a dataset is built from (stored in the file; a checkpoint resumes only under an equal one)."""

    powers_w: tuple[float, ...] = (0.001, 0.01, 0.1)
    """Transmit power levels (watts)."""
    images: int = 4
    """Images per (request, strategy); each is received at every power."""
    seed: int = 0
    link: LinkConfig = field(default_factory=LinkConfig)
    generator: str = ""
    scorer: str = ""
    optimizer: str = ""

    def identity(self, requests: Sequence[Request], strategy_list: Sequence[Strategy]) -> dict:
        cfg = asdict(self)
        cfg["link"] = {"distance_m": self.link.distance_m, "channel": asdict(self.link.channel)}
        cfg["requests"] = [asdict(r) for r in requests]
        cfg["strategies"] = [asdict(s) for s in strategy_list]
        return json.loads(json.dumps(cfg))


@dataclass
class DemonstrationDataset:
    """D in memory (see the module docstring for the fields)."""

    requests: list[Request]
    strategies: list[str]
    powers_w: np.ndarray
    ber: np.ndarray
    prompts: np.ndarray
    negative_prompts: np.ndarray
    corpora: list[dict]
    scores: np.ndarray
    config: dict
    build_seconds: float = 0.0

    def mean_scores(self) -> np.ndarray:
        """``(requests, strategies, powers)`` mean over the images."""
        return self.scores.mean(axis=3)

    def save(self, path: str | Path) -> Path:
        buf = io.BytesIO()
        np.savez(buf, format=np.array(FORMAT), config=np.array(json.dumps(self.config)),
                 raw=np.array([r.raw for r in self.requests]), intent=np.array([r.intent for r in self.requests]),
                 threshold=np.array([r.threshold for r in self.requests], dtype=float),
                 strategies=np.array(self.strategies), powers_w=self.powers_w, ber=self.ber, prompt=self.prompts,
                 negative_prompt=self.negative_prompts, corpus=np.array([json.dumps(c) for c in self.corpora]),
                 scores=self.scores, build_seconds=np.array(self.build_seconds))
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "DemonstrationDataset":
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != FORMAT:
                    raise UserError(f"{path}: format: {str(z['format'])!r} is not {FORMAT!r}")
                requests = [Request(str(a), str(b), float(t)) for a, b, t in zip(z["raw"], z["intent"], z["threshold"])]
                return cls(requests, [str(s) for s in z["strategies"]], z["powers_w"], z["ber"], z["prompt"],
                           z["negative_prompt"], [json.loads(str(c)) for c in z["corpus"]], z["scores"],
                           json.loads(str(z["config"])), float(z["build_seconds"]))
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"{path}: not a demonstration dataset ({exc})") from None


def _build_request(j: int, request: Request, corpus: PromptCorpus, strategy_list: Sequence[Strategy],
                   generator: ImageGenerator, scorer: Scorer, cfg: DatasetConfig, bers: np.ndarray):
    """Prompts, negative prompts and scores ``(strategies, powers, images)`` of request ``j``."""
    engineered = [apply_strategy(corpus, s) for s in strategy_list]
    scores = np.zeros((len(strategy_list), len(bers), cfg.images), dtype=np.float32)
    for k, e in enumerate(engineered):
        seed = derive_seed(cfg.seed, j, k, bits=32)
        images = generator.generate(e.prompt, e.negative_prompt, cfg.images, seed)
        for m, ber in enumerate(bers):
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, j, k, 1000 + m]))
            seeds = [derive_seed(cfg.seed, j, k, 1000 + m, s, bits=31) for s in range(cfg.images)]
            scores[k, m] = scorer.score(receive(images, float(ber), rng), [request] * cfg.images, seeds)
    return [e.prompt for e in engineered], [e.negative_prompt for e in engineered], scores


def build_dataset(requests: Sequence[Request], strategy_list: Sequence[Strategy], optimizer: PromptOptimizer,
                  generator: ImageGenerator, scorer: Scorer, cfg: DatasetConfig, out: str | Path | None = None,
                  progress: bool = True, stop_after: int | None = None) -> DemonstrationDataset | None:
    """Build D (see the module docstring); with ``out``, checkpoint after every request and resume.

    ``stop_after`` (tests, interruption drills) returns ``None`` after that many new requests,
    leaving the checkpoint behind.
    """
    from tqdm import tqdm

    if not requests or not strategy_list:
        raise UserError("dataset: needs at least one request and one strategy")
    cfg.generator, cfg.scorer, cfg.optimizer = generator.name, scorer.name, optimizer.name
    identity = cfg.identity(requests, strategy_list)
    bers = np.asarray(ber_at_power(np.asarray(cfg.powers_w, dtype=float), cfg.link), dtype=float)
    shape = (len(requests), len(strategy_list), len(bers), cfg.images)
    scores = np.zeros(shape, dtype=np.float32)
    prompts = np.full((len(requests), len(strategy_list)), "", dtype=object)
    negatives = np.full_like(prompts, "")
    corpora: list[dict] = [{} for _ in requests]
    done = np.zeros(len(requests), dtype=bool)
    elapsed = 0.0
    checkpoint = Path(f"{out}.partial.npz") if out is not None else None
    if checkpoint is not None and checkpoint.exists():
        with np.load(checkpoint, allow_pickle=False) as z:
            if json.loads(str(z["identity"])) == identity:
                done, scores = z["done"].copy(), z["scores"].copy()
                prompts, negatives = z["prompt"].astype(object), z["negative_prompt"].astype(object)
                corpora = [json.loads(str(c)) for c in z["corpus"]]
                elapsed = float(z["elapsed"])
    new = 0
    bar = tqdm(total=len(requests), initial=int(done.sum()), desc="dataset", unit="request", disable=not progress)
    for j, request in enumerate(requests):
        if done[j]:
            continue
        begin = time.perf_counter()
        corpus = optimizer.corpus(request.raw, seed=cfg.seed)
        prompts[j], negatives[j], scores[j] = _build_request(j, request, corpus, strategy_list, generator, scorer,
                                                             cfg, bers)
        corpora[j] = corpus.to_dict()
        done[j] = True
        elapsed += time.perf_counter() - begin
        new += 1
        bar.update(1)
        if checkpoint is not None:
            buf = io.BytesIO()
            np.savez(buf, identity=np.array(json.dumps(identity)), done=done, scores=scores,
                     prompt=prompts.astype(str), negative_prompt=negatives.astype(str),
                     corpus=np.array([json.dumps(c) for c in corpora]), elapsed=np.array(elapsed))
            atomic_write_bytes(checkpoint, buf.getvalue())
        if stop_after is not None and new >= stop_after and not done.all():
            bar.close()
            return None
    bar.close()
    dataset = DemonstrationDataset(list(requests), [s.name for s in strategy_list], np.asarray(cfg.powers_w, float),
                                   bers, prompts.astype(str), negatives.astype(str), corpora, scores, identity,
                                   elapsed)
    if out is not None:
        dataset.save(out)
        checkpoint.unlink(missing_ok=True)
    return dataset
