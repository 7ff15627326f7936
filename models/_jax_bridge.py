"""The bridge on the JAX engine: an accelerated function that ``jax.jit``,
``jax.vmap`` and ``jax.grad`` can transform (``Accelerator(engine="jax")``).

The function is traced to a jaxpr and walked by the same :class:`JaxprEvaluator` as the
eager bridge, but on tracers (``concrete=False``): every floating ``dot_general`` and
``conv_general_dilated`` becomes operand rounding (:func:`round_operand_jax`), the
lowering of :mod:`models._lowering` in ``jax.numpy`` and :func:`models.jax_matmul`;
everything else is bound as it was.  The result is a plain JAX computation, so it
compiles, batches and runs on any device, and it equals the Numba engine's result bit
for bit (same rounding, same K order, same numerics core).

Gradients are straight-through (:func:`_straight_through`): the backward pass of a
simulated GEMM is the backward pass of the exact primitive at the same operands, as if
the matrix unit computed in full precision; only the forward values carry the
simulated hardware's rounding (and faults).

The scaling recipes run here too (:mod:`models._jax_scaling`).  Value-level faults in
the loop: :class:`models.OutputBitFlip` and :class:`models.ScaleBitFlip` faults given as
data (:func:`flip_array`: one int32 row ``(gemm, target, index, bit)`` per fault) flip a
bit of a GEMM's D or of its scales inside the traced computation, so many trials run in
one ``jax.vmap`` over that array (:meth:`models.AcceleratedFunction.inject_many`).
Every floating result of the walk is pinned (:func:`_pin`) so that XLA's fusion cannot
change its rounding.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._faults import GemmSite, OutputBitFlip
from ._jax_scaling import dequantize_jax, quantize_jax, scaled_gemm_jax
from ._scale_faults import ScaleBitFlip
from ._jax_operands import round_operand_jax
from ._jaxpr import JaxprEvaluator, is_floating
from ._lowering import lower_conv, lower_dot_general, promote, unroutable

__all__ = ["JaxInterpreter", "flip_array", "check_flip_rows", "FLIP_FIELDS", "FLIP_TARGETS"]

#: the columns of a fault row given as data (see :func:`flip_array`)
FLIP_FIELDS = ("gemm", "target", "index", "bit")
#: what a row's ``target`` (0, 1, 2) flips: D (accumulator bits), A's or B's scales
FLIP_TARGETS = ("d", "scale_a", "scale_b")
_U = jnp.uint32


def flip_array(faults, sites, acc) -> np.ndarray:
    """Value-level faults as data: an (n, 4) int32 array of rows (gemm, target, index,
    bit) (:data:`FLIP_FIELDS`), one per :class:`models.OutputBitFlip` (target 0, index
    the flat index of (group, row, col) in D (G, M, N)) or :class:`models.ScaleBitFlip`
    (target 1 for A's scales, 2 for B's; index the flat index in the scale array).
    ``sites``: the :class:`GemmSite` tuple the ``gemm`` fields index; ``acc``: the
    :class:`models.Accelerator`.  Raises ValueError for a fault outside them."""
    rows = []
    for f in faults:
        if isinstance(f, OutputBitFlip):
            _check_gemm(f.gemm, sites)
            s = sites[f.gemm]
            for name, v, n in (("group", f.group, s.groups), ("row", f.row, s.M), ("col", f.col, s.N)):
                if not 0 <= v < n:
                    raise ValueError(f"{name} must be in [0, {n}) for GEMM {f.gemm}, not {v}")
            rows.append((f.gemm, 0, (f.group * s.M + f.row) * s.N + f.col, f.bit))
        elif isinstance(f, ScaleBitFlip):
            rows.append((f.gemm, 1 if f.operand == "a" else 2, f.index, f.bit))
        else:
            raise TypeError(f"faults must be OutputBitFlip or ScaleBitFlip values on engine='jax', "
                            f"not {type(f).__name__}")
    out = np.array(rows, np.int64).reshape(len(rows), len(FLIP_FIELDS))
    check_flip_rows(out, sites, acc)
    return out.astype(np.int32)


def _check_gemm(g, sites):
    if not 0 <= g < len(sites):
        raise ValueError(f"gemm must be in [0, {len(sites)}) (or -1: no fault), not {g}")
    if sites[g].where != "jax":
        raise ValueError(f"faults must target GEMMs run on the simulator, not GEMM {g} ({sites[g].name}), "
                         f"which ran natively")


def check_flip_rows(rows: np.ndarray, sites, acc) -> None:
    """ValueError unless every row (gemm, target, index, bit) names a GEMM of ``sites``
    run on the engine, an existing element of its D or scales and a bit of it (gemm
    -1: no fault)."""
    kind, n = acc.scaling_kind
    for g, target, index, bit in rows:
        if g == -1:
            continue
        _check_gemm(g, sites)
        s = sites[g]
        if not 0 <= target < len(FLIP_TARGETS):
            raise ValueError(f"target must be in [0, {len(FLIP_TARGETS)}) {FLIP_TARGETS}, not {target}")
        if target == 0:
            size, width = s.groups * s.M * s.N, acc.acc_dtype.itemsize * 8
        elif kind == "none":
            raise ValueError(f"gemm must be a scaled GEMM (Accelerator(scaling=...) not 'none') for a scale "
                             f"fault, not GEMM {g} ({s.name})")
        else:
            nb = -(-s.K // n) if kind == "block" else 1
            rows_of = {"tensor": (1, 1), "row": (s.groups * s.M, s.groups * s.N),
                       "block": (s.groups * s.M * nb, s.groups * nb * s.N)}[kind]
            size, width = rows_of[target - 1], 8 if kind == "block" else 32
        if not 0 <= index < size:
            raise ValueError(f"index must be in [0, {size}) for {FLIP_TARGETS[target]} of GEMM {g}, not {index}")
        if not 0 <= bit < width:
            raise ValueError(f"bit must be in [0, {width}) for {FLIP_TARGETS[target]} of GEMM {g}, not {bit}")


def _flip(x, gemm: int, target: int, flips):
    """x (any shape, a float or unsigned array) with the bits of the rows of ``flips``
    ((n, 4) int32, :data:`FLIP_FIELDS`) that name GEMM ``gemm`` and ``target`` flipped
    at their flat index (traceable; ranges are checked before tracing)."""
    width = np.dtype(x.dtype).itemsize * 8
    ut = jnp.dtype(f"uint{width}")
    bits = lax.bitcast_convert_type(x, ut) if np.dtype(x.dtype) != ut else x
    flat = bits.reshape(-1)
    iota = jnp.arange(flat.shape[0])
    for i in range(flips.shape[0]):
        f = flips[i]
        hit = (f[0] == gemm) & (f[1] == target) & (iota == f[2])
        mask = lax.shift_left(jnp.ones((), ut), jnp.clip(f[3], 0, width - 1).astype(ut))
        flat = jnp.where(hit, flat ^ mask, flat)
    bits = flat.reshape(x.shape)
    return lax.bitcast_convert_type(bits, x.dtype) if np.dtype(x.dtype) != ut else bits


class JaxInterpreter(JaxprEvaluator):
    """One traced walk of a jaxpr with its GEMMs on the JAX engine.

    Args:
        acc: the :class:`models.Accelerator` (``engine="jax"``).
        flips: None, or an (n, 5) int32 array (possibly traced) of output bit flips
            (see :func:`flip_array`) applied inside the traced GEMMs.
        fallback: ``"error"`` or ``"native"``, as :func:`models.accelerated`.
        matmul: None (the JAX engine: :func:`models.jax_matmul` with the
            accelerator's profile and split_k), or a traceable ``matmul(a, b)`` of the
            rounded operands a (G, M, K), b (G, K, N) returning D (G, M, N) in the
            accumulator dtype (e.g. a faulty chip: :func:`models.chip_matmul`).
    Attributes:
        sites: the :class:`GemmSite` of each GEMM in walk order (``where`` ``"jax"``:
            run by the JAX engine; ``"native"``: bound natively).
    """

    label = "the bridge (JAX engine)"

    def __init__(self, acc, *, flips=None, fallback: str = "error", matmul=None):
        super().__init__(concrete=False)
        self.acc = acc
        self.matmul = matmul if matmul is not None else acc.jax_gemm
        self.flips = flips
        self.fallback = fallback
        self.sites: list[GemmSite] = []
        self._zero = None

    def run(self, closed, args):
        # a zero XLA cannot see through, from the host at run time (see _pin)
        self._zero = jax.pure_callback(lambda: np.uint32(0), jax.ShapeDtypeStruct((), _U))
        return super().run(closed, args)

    def bind(self, eqn, invals) -> list:
        return [_pin_floating(x, self._zero) for x in super().bind(eqn, invals)]

    def _site(self, eqn, scope, shape, where):
        site = GemmSite(len(self.sites), self.site_name(eqn, scope), eqn.primitive.name, *shape,
                        tuple(eqn.outvars[0].aval.shape), (), where)
        self.sites.append(site)
        return site

    def gemm(self, eqn, invals, key, scope, tainted):
        why = unroutable(eqn)
        if why:
            return self.native_gemm(eqn, invals, key, scope, tainted, why)[0]
        lhs, rhs = promote(*invals)
        prim, params = eqn.primitive, dict(eqn.params)
        out_dtype = eqn.outvars[0].aval.dtype
        acc = self.acc
        index = len(self.sites)
        shape_box = []

        def simulated(x, y, flips, zero):
            scaled = acc.scaling != "none"
            if not scaled:  # round first: the lowering may duplicate elements (im2col)
                x, y = round_operand_jax(acc, x), round_operand_jax(acc, y)
            if prim.name == "dot_general":
                a, b, assemble = lower_dot_general(x, y, params["dimension_numbers"], xp=jnp)
            else:
                a, b, assemble = lower_conv(x, y, xp=jnp, **params)
            shape_box.append((a.shape[0], a.shape[1], a.shape[2], b.shape[2]))
            if not scaled:
                d = self.matmul(a, b)
                if flips is not None:
                    d = _flip(d, index, 0, flips)
                return _pin_floating(assemble(d).astype(out_dtype), zero)
            # the scales follow the GEMM's layout (rows of A, columns of B, blocks of K)
            qa, qb, sc = quantize_jax(acc, a, b)
            if flips is not None:
                sc = sc._replace(a=_flip(sc.a, index, 1, flips), b=_flip(sc.b, index, 2, flips))
            d = scaled_gemm_jax(acc, qa, qb, sc, self.matmul)
            if flips is not None:  # D faults act on D before the epilogue, as in the eager bridge
                d = _flip(d, index, 0, flips)
            return _pin_floating(assemble(dequantize_jax(acc, d, sc)).astype(out_dtype), zero)

        def exact(x, y):
            return prim.bind(x, y, **prim.get_bind_params(params))

        out = _straight_through(simulated, exact)(lhs, rhs, self.flips, self._zero)
        self._site(eqn, scope, shape_box[0], "jax")
        return out

    def native_gemm(self, eqn, invals, key, scope, tainted, why):
        outs = self.bind_or_refuse(eqn, invals, why, self.fallback, "the JAX engine")
        self._site(eqn, scope, (0, 0, 0, 0), "native")
        return outs


@jax.custom_jvp
def _pin(x, zero):
    """x, bit for bit, computed so that XLA cannot fuse it into the next operation's
    arithmetic: its bits OR a zero known only at run time.

    Under ``jax.jit`` XLA fuses elementwise operations and lets LLVM contract a
    multiply and a following add into one fused multiply-add (one rounding instead of
    two: the CPU backend always allows it) and fold the last multiply of one operation
    into the next; the eager bridge binds every primitive on its own, so every result
    is rounded.  Pinning every floating result of the walked jaxpr keeps the jitted
    function equal to the eager one bit for bit; the derivative is the identity."""
    ut = jnp.dtype(f"uint{np.dtype(x.dtype).itemsize * 8}")
    return lax.bitcast_convert_type(lax.bitcast_convert_type(x, ut) | zero, x.dtype)


_pin.defjvp(lambda primals, tangents: (_pin(*primals), tangents[0]))


def _pin_floating(x, zero):
    """:func:`_pin` for a 16- or 32-bit floating array (other arrays as they are);
    zero: the uint32 run-time zero."""
    dt = np.dtype(x.dtype)
    if not is_floating(dt) or dt.itemsize not in (2, 4):
        return x
    return _pin(x, zero.astype(jnp.dtype(f"uint{dt.itemsize * 8}")))


def _straight_through(simulated, exact):
    """``simulated(x, y, flips, zero)`` forward, with the gradient of ``exact(x, y)`` at
    the same operands backward (the straight-through estimator).  ``flips`` and
    ``zero`` (integer arrays or None) are arguments, not closed over, because a
    custom_vjp function may not close over traced values; they get no cotangent."""

    @jax.custom_vjp
    def f(x, y, flips, zero):
        return simulated(x, y, flips, zero)

    def fwd(x, y, flips, zero):
        return simulated(x, y, flips, zero), (x, y)

    def bwd(res, g):
        _, vjp = jax.vjp(exact, *res)
        return tuple(vjp(g)) + (None, None)

    f.defvjp(fwd, bwd)
    return f
