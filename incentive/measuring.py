"""The backend stages of ``incentive run``: load the models, measure every user's requests.

What this module is for: the "measure the users" step of :func:`incentive.pipeline.run_pipeline`:
each user's requests with its trials through a link at its BER, by the backend's one batched
measurement (``provisioning.backend.measurement.measure_groups``), with a progress bar per model.

May import: everything below ``incentive`` (``provisioning.backend``, ``provisioning.coupling``), tqdm.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable

from market.seeding import derive_seed


@dataclass
class Backend:
    """Loaded backend models (by name) and the digits evaluator."""

    models: dict
    evaluator: Any
    device: str = "cpu"


def load_backend(models: dict, config) -> Backend:
    """Load every model the ASPs run (digits or scenes, ``load_measured_model``) and the digits evaluator
    (a scene model brings its judge); torch single-threaded: CPU time is the work."""
    import torch

    from provisioning.backend.evaluator import load_evaluator
    from provisioning.backend.measurement import device_name, load_measured_model

    torch.set_num_threads(1)
    loaded = {name: load_measured_model(name, device=config.device) for name in sorted(set(models.values()))}
    return Backend(loaded, load_evaluator(), device_name(next(iter(loaded.values()))) if loaded else "cpu")


def measure_users(priced, inputs, backend: Backend, config,
                  log: Callable[[str], None]) -> list:
    """Each user's ``samples`` requests with its trials at its BER (``measure_groups``, per model)."""
    from provisioning.backend.measurement import RequestGroup, measure_groups

    mk = priced.result.market
    out = [None] * mk.n_mus
    for model_name in sorted(set(inputs.models.values())):
        mine = [m for m in range(mk.n_mus) if inputs.models.get(mk.asp_names[mk.mu_asp[m]]) == model_name]
        groups = [RequestGroup(int(priced.trials[m]), config.samples, derive_seed(config.seed, 1, m, bits=31),
                               (float(priced.ber[m]),)) for m in mine]
        bar = _progress(config, sum(g.samples for g in groups), f"measuring {model_name}")
        for m, meas in zip(mine, measure_groups(backend.models[model_name], groups, steps=config.steps,
                                                evaluator=backend.evaluator, progress=bar)):
            out[m] = meas
        bar.close()
    return out


def _progress(config, total: int, label: str):
    """A tqdm bar on stderr (silent when ``config.progress`` is off); called with requests done."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=f"      {label}", unit="req", disable=not config.progress, leave=False,
               file=sys.stderr, mininterval=0.5)

    class _Bar:
        def __call__(self, done: int) -> None:
            bar.update(done - bar.n)

        def close(self) -> None:
            bar.close()

    return _Bar()
