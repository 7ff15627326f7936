"""gemmfi.simulator: bit-exact numerics of matrix units.

* formats and datapath profiles (frozen data, read-only catalogues): :class:`Format`,
  :data:`FORMATS`, :class:`DatapathProfile`, :class:`StepRule`, :data:`PROFILES`;
* the fast bit-exact GEMM, :func:`matmul`;
* the cycle-level PE arrays, :class:`SystolicArray` and :class:`TensorCoreArray`,
  whose named pipeline registers (:class:`Register`) are fault sites; the
  :class:`Schedule` of a GEMM on an array (folds, cycles, live cycles);
* fault specifications (:class:`Fault`, :class:`OutputFault`), a chip's permanent
  faults (:class:`FaultMap`: stuck-at bits held in every fold; :func:`chip_gemm`: a
  GEMM on such a chip, cycle-level only where its faults reach), and the fault-site
  population an array offers (:class:`FaultSites`, :class:`SiteGroup`);
* golden runs (:class:`ArrayGoldenRun`): a fault-free run kept for fast re-runs
  under faults (:class:`Injection`), what campaigns and protection judge against.

Importing it loads NumPy and Numba only (no JAX, nothing of the packages above it).
"""
from types import MappingProxyType

from ._array import DATAFLOWS, SystolicArray, TensorCoreArray
from ._chip_run import chip_gemm
from ._fault import FAULT_KINDS, Fault, OutputFault, apply_output_faults, flip_bits
from ._faultmap import STUCK_KINDS, FaultMap
from ._formats import FORMATS, ROUNDING_MODES, Format, get_format
from ._golden import ArrayGoldenRun, Injection
from ._matmul import (SPLIT_REDUCTIONS, RoundingTarget, check_scale_support, check_scales, check_split_k, matmul,
                      rounding_targets, scale_table)
from ._matmul import _PRECISIONS, _SPLIT_TERMS
from ._pe import REGISTER_ROLES, Register
from ._profiles import C_MODES, PROFILES, DatapathProfile, StepRule, get_profile
from ._results import ArrayResult, FaultSites, SiteGroup
from ._schedule import Schedule

#: ``matmul``'s ``precision`` -> the (A part, B part) index pairs of its partial bf16 GEMMs
#: in the order they are summed (smallest first, then C); part 0 is the RNE bf16 of the
#: float32 value, each next part that of what the parts before it left
PRECISION_TERMS = MappingProxyType({name: tuple(_SPLIT_TERMS[n]) for name, n in _PRECISIONS.items()})

__all__ = ["FORMATS", "ROUNDING_MODES", "Format", "get_format", "matmul", "RoundingTarget", "rounding_targets",
           "SPLIT_REDUCTIONS", "check_split_k", "scale_table", "check_scales", "check_scale_support", "PRECISION_TERMS",
           "C_MODES", "PROFILES", "DatapathProfile", "StepRule", "get_profile",
           "DATAFLOWS", "SystolicArray", "TensorCoreArray", "ArrayResult",
           "REGISTER_ROLES", "Register", "Schedule", "FaultSites", "SiteGroup",
           "FAULT_KINDS", "Fault", "OutputFault", "apply_output_faults", "flip_bits",
           "ArrayGoldenRun", "Injection", "FaultMap", "STUCK_KINDS", "chip_gemm"]
