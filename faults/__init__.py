"""gemmfi.faults: fault specifications, fault sites, campaigns (grows with the cycle-level model)."""
__all__: list[str] = []
