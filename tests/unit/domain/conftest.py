from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Enough examples to find boundary cases, few enough that `pytest tests/unit` stays well
# under its 10-second budget; HYPOTHESIS_PROFILE=thorough for a longer hunt.
settings.register_profile(
    "unit", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=2_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "unit"))
