"""The evaluator consistency experiment of the paper's Fig. 10: two personalities x two images x 200 seeds.

What this module is for: Du et al., "User-Centric Interactive AI for Distributed Diffusion
Model-based AI-Generated Content", section 5.2.2, scores two images of Fig. 9 (A: a good image
for the user's prompt; B: a poorer one carrying the server prompt's traits) by two agents (GA1,
GA2) under 200 seeds, and reads two things off the scatter: each agent's scores cluster per
image (consistent with its traits), and the spread is larger on the poorer image.
:func:`consistency` runs that on any two images; :func:`rendered_pair` builds A and B exactly
with the scene renderer (no generator involved), so the test does not depend on generation
quality.

May import: numpy, this package's evaluators, the public API of ``provisioning.backend.scenes``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .evaluators import PRESETS, make_evaluator, measure_properties

#: The device prompt and the server prompt of the rendered pair (the paper's dog / tiger in front of a bush).
OWN_DESCRIPTION = dict(scene="grassland", object="house", colour="white", count="one", size="large",
                       position="centre", lighting="day", degradation="none")
OTHER_OVERRIDES = dict(object="car", colour="red")


def rendered_pair(variant: int = 0):
    """``(images (2, 3, 32, 32) in [-1, 1], own_prompt, other_prompt)``.

    Image A renders the own prompt cleanly; image B renders the own scene with the server
    prompt's object and colour, noisy (a fused, degraded result).
    """
    from provisioning.backend.scenes import SceneDescription, caption
    from provisioning.backend.scenes.render import render, to_model_space  # the function, not the module

    own = SceneDescription(**OWN_DESCRIPTION)
    fused = replace(own, **OTHER_OVERRIDES, degradation="noise")
    other = replace(own, **OTHER_OVERRIDES)
    images = to_model_space(np.stack([render(own, variant), render(fused, variant)]))
    return images, caption(replace(own, degradation=None)), caption(replace(other, degradation=None))


def consistency(judge, images: np.ndarray, own_prompt: str, other_prompt: str | None,
                personalities=("GA1", "GA2"), seeds: int = 200, evaluator: str = "big-five",
                image_names=("A", "B")) -> list[dict]:
    """Scores of each personality on each image over ``seeds`` seeds: one row per (personality, image).

    Rows: ``personality``, ``image``, ``mean``, ``sd``, ``min``, ``max``, ``scores`` (the list),
    and the image's measured ``properties``.
    """
    props = measure_properties(judge, images, [own_prompt] * len(images), [other_prompt] * len(images))
    rows = []
    for name in personalities:
        ev = make_evaluator(evaluator, PRESETS[name])
        for i, image_name in enumerate(image_names):
            one = type(props)(**{k: v[i:i + 1].repeat(seeds) for k, v in props.__dict__.items()})
            scores = ev.qoe(one, np.repeat(images[i:i + 1], seeds, axis=0), [own_prompt] * seeds,
                            [other_prompt] * seeds, list(range(seeds)))
            rows.append({"personality": name, "image": image_name, "mean": float(scores.mean()),
                         "sd": float(scores.std(ddof=1)), "min": float(scores.min()), "max": float(scores.max()),
                         "scores": [round(float(s), 5) for s in scores], "properties": props.row(i)})
    return rows
