"""Shared test configuration: a hypothesis profile sized for a 2-core CI machine."""
import os

from hypothesis import HealthCheck, settings

# deadline=None: the first example of a test pays Numba's (cached) compile and the
# reference's exact-rational arithmetic, both far slower than hypothesis' 200 ms default.
settings.register_profile(
    "gemmfi",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gemmfi"))
