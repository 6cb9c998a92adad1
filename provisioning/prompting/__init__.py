"""Interactive prompt engineering (section IV of Liu et al., "Intelligent Mobile AI-Generated
Content Services via Interactive Prompt Engineering and Dynamic Service Provisioning").

Modules, in the order of the paper:

* :mod:`.corpus` — the prompt corpus along six aspects (section IV-A, eq. (11)): the
  ``PromptOptimizer`` protocol, the seeded world-knowledge optimizer, a callable / local-LLM
  adapter and the instruction text the paper's authors used for their LLM;
* :mod:`.strategies` — Table II's strategies 0-6 and a registry for user-defined ones;
* :mod:`.requests` — requests (raw prompt, hidden intent, threshold), the power -> BER link and
  the ``Scorer`` protocol: the personality-conditioned evaluators of ``provisioning.denoising``
  (``EvaluatorScorer``) or the judge's intent match x degradation (``JudgeScorer``), 0-10;
* :mod:`.dataset` — the demonstration dataset D of eq. (13), checkpointed and resumable;
* :mod:`.imitation_env` — the gymnasium environment of eqs. (14)-(15) and the policies
  (GAIL, PPO on scores, random, empirical, expert);
* :mod:`.rounds` — service rounds needed at a confidence level (section VI-C, Fig. 12);
* :mod:`.experiment` — request files, generators, the 5-seed evaluation and the whole
  experiment (``incentive prompts experiment``) with the issue's criteria and the paper's claims;
* :mod:`.figures` — Figs. 10 (strategies on three prompts), 11 (training), 12 (service rounds);
* :mod:`.service` — D's quality per strategy as the provisioning layer's per-trial quality
  (``incentive run --prompt-engineering``).

May import: numpy, scipy, ``market`` (errors, atomic IO, seeding), ``provisioning.channel``,
``provisioning.backend`` (channel, scenes), ``provisioning.denoising.evaluators``,
``provisioning.quality``, ``provisioning.coupling``; matplotlib in :mod:`.figures`; torch,
gymnasium, stable-baselines3 and imitation inside the modules that need them. Never ``incentive``.
"""
