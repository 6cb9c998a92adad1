"""Distributed denoising with personality-conditioned evaluators (Du et al., "User-Centric
Interactive AI for Distributed Diffusion Model-based AI-Generated Content", sections 3-4).

- :mod:`.evaluators`: Big Five personalities, measured image properties, the Evaluator protocol
  and registry (the built-in trait model, a pluggable LLM/VLM evaluator and its test double),
  the GA1/GA2 presets, and the Fig. 10 consistency experiment;
- :mod:`.generation`: the shared-denoising generators (the scene backend, and a rendering test
  double) and the on-disk generation cache;
- :mod:`.problem`: the allocation problem of eqs. (21)-(24) with the penalised reward of
  eq. (27), its gymnasium environment, and the exact optimum by enumeration;
- :mod:`.gddpg`: G-DDPG (the D3PG diffusion actor with one DDPG critic), registered as an agent;
- :mod:`.learning`: the problem on the shared training scaffolding (``provisioning.training``:
  run folders, checkpoints, resume), validation on held-out users;
- :mod:`.runs`: the comparison behind ``incentive denoise evaluate`` (5 seeds, held-out users);
- :mod:`.figures`: Figs. 8-14.

May import: numpy, scipy, torch, gymnasium, matplotlib, ``market`` (errors, atomic IO), ``provisioning.channel``,
``provisioning.agents`` and the public API of ``provisioning.backend.scenes``. Never ``incentive``.
"""
