"""gemmfi.simulator: bit-exact numerics of matrix units.

Formats and datapath profiles (frozen data), the fast bit-exact GEMM
(:func:`matmul`), and the cycle-level PE arrays (:class:`SystolicArray`,
:class:`TensorCoreArray`) whose named pipeline registers are fault sites.
"""
from ._fault import FAULT_KINDS, Fault, OutputFault, apply_output_faults
from ._array import DATAFLOWS, ArrayResult, FaultSites, SystolicArray, TensorCoreArray
from ._formats import FORMATS, ROUNDING_MODES, Format, get_format
from ._matmul import matmul
from ._profiles import C_MODES, PROFILES, DatapathProfile, StepRule, get_profile

__all__ = ["FORMATS", "ROUNDING_MODES", "Format", "get_format", "matmul", "C_MODES", "PROFILES",
           "DatapathProfile", "StepRule", "get_profile",
           "DATAFLOWS", "ArrayResult", "FaultSites", "SystolicArray", "TensorCoreArray",
           "FAULT_KINDS", "Fault", "OutputFault", "apply_output_faults"]

# golden runs: fault-free runs kept for fast re-runs under faults (campaigns, protection)
from ._array import ArrayGoldenRun, Injection  # noqa: E402

__all__ += ["ArrayGoldenRun", "Injection"]
