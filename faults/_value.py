"""Value-level fault injection in native JAX: the MPGemmFI method as a baseline.

:class:`NativeValueInjector` runs a JAX function natively (XLA, jit-compiled once)
with one bit of one element of one GEMM's output flipped; the GEMM index, element
and bit are runtime arguments, so every injection is one call of the same compiled
function.  GEMMs (``dot_general`` and ``conv_general_dilated`` on floating operands)
are numbered in execution order, as :class:`models.GoldenTrace` numbers them.  Its
numbers are XLA's float32, not the simulated accelerator's: it measures what a
software injector costs, for comparison with the register-level campaigns.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

__all__ = ["NativeValueInjector"]

_GEMMS = ("dot_general", "conv_general_dilated")
_CALLS = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
          "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "checkpoint": "jaxpr",
          "remat": "jaxpr"}


def _open(j):
    return (j.jaxpr, list(j.consts)) if isinstance(j, ClosedJaxpr) else (j, [])


def _subs(params):
    for v in params.values():
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(x, (Jaxpr, ClosedJaxpr)):
                yield _open(x)[0]


def _has_gemm(j) -> bool:
    return any(e.primitive.name in _GEMMS or any(_has_gemm(s) for s in _subs(e.params)) for e in j.eqns)


class NativeValueInjector:
    """``fn(*args)`` natively, with an optional one-bit flip in one GEMM output.

    Args:
        fn: a JAX function; args: its (array) arguments, fixed.

    Attributes:
        gemms: ((out_shape, dtype), ...) of each GEMM execution, in order.
        golden: the fault-free output (numpy), from the same compiled function.
    """

    def __init__(self, fn, *args):
        closed = jax.make_jaxpr(fn)(*args)
        self._closed = closed
        self._args = args
        self.gemms = []
        self._walk(closed.jaxpr)
        self.gemms = tuple(self.gemms)
        self._jit = jax.jit(self._run)
        self.golden = self(-1, 0, 0)

    def _walk(self, j):
        for e in j.eqns:
            n = e.primitive.name
            if n in _GEMMS and np.dtype(e.outvars[0].aval.dtype).kind == "f":
                self.gemms.append((tuple(e.outvars[0].aval.shape), np.dtype(e.outvars[0].aval.dtype)))
            elif n in _CALLS and _CALLS[n] in e.params:
                self._walk(_open(e.params[_CALLS[n]])[0])
            elif any(_has_gemm(s) for s in _subs(e.params)):
                raise NotImplementedError(f"NativeValueInjector cannot number GEMMs inside a {n!r} primitive")

    def _run(self, gemm, index, mask, args):
        counter = [0]

        def ev(j, consts, vals):
            env = {}

            def read(v):
                return v.val if isinstance(v, Literal) else env[v]

            for v, x in zip(j.constvars, consts):
                env[v] = x
            for v, x in zip(j.invars, vals):
                env[v] = x
            for e in j.eqns:
                ins = [read(v) for v in e.invars]
                n = e.primitive.name
                if n in _CALLS and _CALLS[n] in e.params:
                    sj, sc = _open(e.params[_CALLS[n]])
                    nin = len(sj.invars)
                    outs = ev(sj, sc, ins[-nin:] if nin else [])
                else:
                    out = e.primitive.bind(*ins, **e.primitive.get_bind_params(e.params))
                    outs = list(out) if e.primitive.multiple_results else [out]
                    if n in _GEMMS and np.dtype(e.outvars[0].aval.dtype).kind == "f":
                        outs = [self._flip(outs[0], counter[0], gemm, index, mask)]
                        counter[0] += 1
                for v, x in zip(e.outvars, outs):
                    env[v] = x
            return [read(v) for v in j.outvars]

        flat_args = jax.tree_util.tree_leaves(args)
        return ev(self._closed.jaxpr, list(self._closed.consts), flat_args)

    @staticmethod
    def _flip(y, i, gemm, index, mask):
        ut = {2: jnp.uint16, 4: jnp.uint32}[y.dtype.itemsize]
        bits = jax.lax.bitcast_convert_type(y.reshape(-1), ut)
        hit = (gemm == i) & (jnp.arange(bits.shape[0]) == index)
        bits = bits ^ jnp.where(hit, mask.astype(ut), ut(0))
        return jax.lax.bitcast_convert_type(bits, y.dtype).reshape(y.shape)

    def __call__(self, gemm: int, index: int, bit: int) -> np.ndarray:
        """The output (numpy) with bit ``bit`` of element ``index`` (flat, row-major) of
        GEMM ``gemm``'s output flipped; ``gemm = -1``: no fault."""
        mask = np.uint32(1 << bit) if 0 <= bit < 32 else np.uint32(0)
        out = self._jit(np.int32(gemm), np.int32(index), mask, self._args)
        out = out[0] if len(out) == 1 else out
        return np.asarray(out)
