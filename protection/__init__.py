"""gemmfi.protection: protection schemes modelled as pipeline stages (planned: parity, SEC-DED, residue, ABFT)."""
__all__: list[str] = []
