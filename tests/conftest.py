"""Shared test configuration.

Hypothesis profiles: ``dev`` (default, quick) and ``ci`` (more examples), both with fixed draws,
and ``nightly`` (many more, fresh random draws), chosen with the ``HYPOTHESIS_PROFILE`` environment variable. The fuzzing
suite (``tests/incentive/test_fuzz_cli.py``) sizes itself: its "ci" size under ``dev`` and ``ci``,
39,000 cases under ``nightly``.
"""
import os

from hypothesis import HealthCheck, settings

# dev and ci draw the same examples on every run (derandomize): a red CI is reproducible and
# never depends on the luck of the draw; nightly draws fresh examples to find new failures.
settings.register_profile("dev", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
