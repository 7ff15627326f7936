"""gemmfi.simulator: bit-exact numerics of matrix units (formats, datapath profiles, GEMM)."""
from ._formats import FORMATS, ROUNDING_MODES, Format, get_format
from ._matmul import matmul
from ._profiles import C_MODES, PROFILES, DatapathProfile, StepRule, get_profile

__all__ = ["FORMATS", "ROUNDING_MODES", "Format", "get_format", "matmul", "C_MODES", "PROFILES",
           "DatapathProfile", "StepRule", "get_profile"]
