"""Interactive prompt engineering (section IV of Liu et al., "Intelligent Mobile AI-Generated
Content Services via Interactive Prompt Engineering and Dynamic Service Provisioning").

Modules, in the order of the paper:

* :mod:`.corpus` — the prompt corpus along six aspects (section IV-A, eq. (11)): the
  ``PromptOptimizer`` protocol, the seeded world-knowledge optimizer, a callable / local-LLM
  adapter and the instruction text the paper's authors used for their LLM;
* :mod:`.strategies` — Table II's strategies 0-6 and a registry for user-defined ones;
* :mod:`.requests` — requests (raw prompt, hidden intent, threshold), the power -> BER link and
  the ``Scorer`` protocol with the judge-based user-side score (0-10);
* :mod:`.dataset` — the demonstration dataset D of eq. (13), checkpointed and resumable;
* :mod:`.imitation_env` — the gymnasium environment of eqs. (14)-(15) and the policies
  (GAIL, PPO on scores, random, empirical, expert);
* :mod:`.rounds` — service rounds needed at a confidence level (section VI-C, Fig. 12).

May import: numpy, ``market`` (errors, atomic IO), ``provisioning.channel``,
``provisioning.backend`` (channel, scenes); torch, gymnasium, stable-baselines3 and imitation
inside the modules that need them. Never ``incentive``.
"""
