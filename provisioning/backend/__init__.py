"""The generation backend: small diffusers models trained in this repository that generate,
and measure true accuracy, tokens and latency, on CUDA when present and on the CPU otherwise.

Public API (imported lazily, so ``import provisioning.backend`` does not load torch)::

    load_model(name_or_path="digits-large", device=None) -> BackendModel
    load_measured_model("scenes-large@10") -> BackendModel | MeasuredModel   (digits or scenes, NAME@STEPS)
    measure_groups(model, [RequestGroup(...)]) -> list[GroupMeasurement]    (the one measurement)
    measure(model, MeasureConfig(...), bers=None) -> MeasureResult | list[MeasureResult]
    quality_scores(model, labels, trials, steps=None, ber=0.0, seed=0) -> np.ndarray (n, trials)
    calibrate(CalibrateConfig(...), out_dir) -> dict
    shared_denoise(model, SharedDenoiseConfig(...)) -> list[SharedDenoiseRow]
    generate(model, labels, steps, seed) -> (images, seconds)
    load_evaluator() -> Evaluator   (judge + scorer)
    MODEL_NAMES = ("digits-small", "digits-medium", "digits-large")

May import: ``market`` (errors, atomic IO, scenario format), numpy, torch, diffusers,
safetensors, scikit-learn, matplotlib (plots only). Never ``incentive``, ``solvers`` or the
learners of ``provisioning``.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "load_model": "models", "BackendModel": "models", "MODEL_NAMES": "models", "DEFAULT_MODEL": "models",
    "default_device": "models",
    "measure": "measurement", "MeasureConfig": "measurement", "MeasureResult": "measurement", "quality_scores": "measurement",
    "measure_groups": "measurement", "RequestGroup": "measurement", "MeasuredModel": "measurement",
    "load_measured_model": "measurement",
    "calibrate": "calibration", "CalibrateConfig": "calibration",
    "shared_denoise": "shared", "SharedDenoiseConfig": "shared", "SharedDenoiseRow": "shared",
    "generate": "sampling", "denoise": "sampling",
    "load_evaluator": "evaluator", "Evaluator": "evaluator",
    "transmit_images": "channel", "transmit_latent": "channel", "flip_bits": "channel",
    "wilson_interval": "stats", "bootstrap_mean_interval": "stats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
