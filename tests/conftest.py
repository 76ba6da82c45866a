"""Suite-wide settings: Hypothesis profiles.

CI runs with ``HYPOTHESIS_PROFILE=ci``: derandomized, so a gating run never depends on the
luck of the draw; random exploration stays on for local runs (the default profile) and in
``python -m bench fuzz``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
