"""gemmfi.faults: fault specifications, fault sites, campaigns (grows with the cycle-level model)."""
from ._fault import FAULT_KINDS, Fault, OutputFault, apply_output_faults

__all__: list[str] = ["FAULT_KINDS", "Fault", "OutputFault", "apply_output_faults"]
