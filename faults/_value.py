"""Value-level fault injection in native JAX: the MPGemmFI method as a baseline.

:class:`NativeValueInjector` runs a JAX function natively (XLA, jit-compiled once)
with one bit of one element of one GEMM's output flipped; the GEMM index, element
and bit are runtime arguments, so every injection is one call of the same compiled
function.  The function is walked by the same jaxpr walker as the bridge
(:class:`models.JaxprEvaluator`, under tracing), so GEMMs are numbered in execution
order exactly as :class:`models.GoldenTrace` numbers them.  Its numbers are XLA's
float32, not the simulated accelerator's: it measures what a software injector
costs, for comparison with the register-level campaigns.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from models import JaxprEvaluator

__all__ = ["NativeValueInjector"]


class _FlipEvaluator(JaxprEvaluator):
    """Binds every GEMM natively and XORs ``mask`` into element ``index`` of GEMM
    ``gemm``'s output (all three are traced runtime values)."""

    label = "NativeValueInjector"

    def __init__(self, gemm, index, mask):
        super().__init__(concrete=False)
        self.target, self.index, self.mask = gemm, index, mask
        self.shapes: list = []

    def gemm(self, eqn, invals, key, scope, tainted):
        prim = eqn.primitive
        y = prim.bind(*invals, **prim.get_bind_params(eqn.params))
        self.shapes.append((tuple(y.shape), np.dtype(y.dtype)))
        ut = {2: jnp.uint16, 4: jnp.uint32}[y.dtype.itemsize]
        bits = jax.lax.bitcast_convert_type(y.reshape(-1), ut)
        hit = (self.target == len(self.shapes) - 1) & (jnp.arange(bits.shape[0]) == self.index)
        bits = bits ^ jnp.where(hit, self.mask.astype(ut), ut(0))
        return jax.lax.bitcast_convert_type(bits, y.dtype).reshape(y.shape)


class NativeValueInjector:
    """``fn(*args)`` natively, with an optional one-bit flip in one GEMM output.

    Args:
        fn: a JAX function; args: its (array) arguments, fixed.

    Attributes:
        gemms: ((out_shape, dtype), ...) of each GEMM execution, in order.
        golden: the fault-free output (numpy), from the same compiled function.
    """

    def __init__(self, fn, *args):
        self._closed = jax.make_jaxpr(fn)(*args)
        self._args = args
        self._shapes: tuple = ()
        self._jit = jax.jit(self._run)
        self.golden = self(-1, 0, 0)  # traces once: walks the jaxpr and numbers its GEMMs
        self.gemms = self._shapes

    def _run(self, gemm, index, mask, args):
        ev = _FlipEvaluator(gemm, index, mask)
        outs, _ = ev.run(self._closed, jax.tree_util.tree_leaves(args))
        self._shapes = tuple(ev.shapes)
        return outs

    def __call__(self, gemm: int, index: int, bit: int) -> np.ndarray:
        """The output (numpy) with bit ``bit`` of element ``index`` (flat, row-major) of
        GEMM ``gemm``'s output flipped; ``gemm = -1``: no fault."""
        mask = np.uint32(1 << bit) if 0 <= bit < 32 else np.uint32(0)
        out = self._jit(np.int32(gemm), np.int32(index), mask, self._args)
        out = out[0] if len(out) == 1 else out
        return np.asarray(out)
