"""gemmfi.models: JAX models run on the simulated accelerator (planned)."""
__all__: list[str] = []
