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

Value-level faults in the loop: :class:`models.OutputBitFlip` faults given as data
(:func:`flip_array`: one int32 row ``(gemm, group, row, col, bit)`` per fault) flip a
bit of a GEMM's D inside the traced computation, so many trials run in one
``jax.vmap`` over that array (:meth:`models.AcceleratedFunction.inject_many`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from simulator import FORMATS, RoundingTarget, get_format

from ._faults import GemmSite, OutputBitFlip
from ._jax_engine import _f32_parts, _round, jax_matmul
from ._jaxpr import JaxprEvaluator, _describe, is_floating
from ._lowering import lower_conv, lower_dot_general, unroutable

__all__ = ["round_operand_jax", "JaxInterpreter", "flip_array", "FLIP_FIELDS"]

#: the columns of a fault row given as data (see :func:`flip_array`)
FLIP_FIELDS = ("gemm", "group", "row", "col", "bit")
_U = jnp.uint32


def round_operand_jax(acc, x):
    """``acc.round_operand(x)`` in ``jax.numpy`` integer arithmetic (traceable).

    Args:
        acc: the :class:`models.Accelerator`.
        x: a floating array (float32, or a dtype of a catalogue format: float16,
            bfloat16, FP8), any shape.
    Returns:
        An array of ``acc.input_dtype`` (float32 for tf32, which the engine narrows),
        bit for bit the eager bridge's rounding, NaN payloads aside (a NaN becomes the
        format's NaN): round to nearest even from the exact value, saturating as
        ``acc.saturates`` says.  Only integer operations and bitcasts touch the values:
        XLA's float conversions may flush subnormals (the CPU backend does).
    """
    if acc.input_format == "tf32":
        return lax.bitcast_convert_type(_f32_bits(x), jnp.float32)
    fmt = get_format(acc.input_format)
    if np.dtype(x.dtype) == fmt.dtype:
        return x
    bits = _f32_bits(x)
    neg, mag, unit, fin, _ = _f32_parts(bits)
    nan = ~fin & ((bits & 0x7FFFFF) != 0)
    inf = ~fin & ~nan
    # the same rounding the engine's steps use, with the format as the target; the
    # format's own top (e4m3: 448, not all ones) and its lack of infinities are applied
    # after, so the target overflows to inf and the result is settled here
    target = RoundingTarget(fmt.man_bits, fmt.emin, fmt.emax, True, True)
    r = _round(neg, mag, unit, jnp.zeros(bits.shape, bool), target)
    top = _U(int(np.float32(fmt.max_finite).view(np.uint32)))
    over = fin & ((r & 0x7FFFFFFF) > top)  # beyond the largest finite value (inf included)
    code = _to_format_bits(jnp.where(over, top, r & 0x7FFFFFFF), fmt)  # magnitude codes
    codes = _special_codes(fmt)
    if acc.saturates:
        code = jnp.where(over | inf, _U(codes["max"]), code)
    elif codes["inf"] is None:  # no infinity: an overflow or an infinity is NaN
        code = jnp.where(over | inf, _U(codes["nan"]), code)
    else:
        code = jnp.where(over | inf, _U(codes["inf"]), code)
    # the sign (a zero result keeps it, as IEEE rounding does); NaN is the format's NaN
    code = code | jnp.where(neg, _U(1 << (fmt.width - 1)), _U(0))
    code = jnp.where(nan, _U(codes["nan"]), code)
    return lax.bitcast_convert_type(code.astype(fmt.uint_dtype), fmt.dtype)


@functools.lru_cache(maxsize=None)
def _special_codes(fmt) -> dict:
    """The format's codes (unsigned, sign bit clear) of its largest finite value, of
    +inf (None when it has none) and of its NaN, from the catalogue's own encoder."""
    def code(v, saturate=False):
        return int(fmt.encode(np.array([v]), "rne", saturate=saturate)[0])
    return {"max": code(fmt.max_finite), "inf": code(np.inf) if fmt.specials == "ieee" else None,
            "nan": code(np.nan)}


@functools.lru_cache(maxsize=None)
def _widening_table(fmt):
    """binary32 bits of every code of a format of at most 16 bits (exact; NaN quiet)."""
    v = fmt.decode(fmt.all_bit_patterns()).astype(np.float32)
    bits = v.view(np.uint32).copy()
    bits[np.isnan(v)] = 0x7FC00000
    return bits


def _f32_bits(x):
    """binary32 bits (uint32) of a float32 array, or of the exact binary32 widening of a
    narrower catalogue format's array (by table: no float conversion)."""
    dt = np.dtype(x.dtype)
    if dt == np.float32:
        return lax.bitcast_convert_type(x, _U)
    fmt = next((f for f in FORMATS.values() if f.dtype == dt and f.container_bits <= 16), None)
    if fmt is None:
        raise TypeError(f"GEMM operands must be float32 or a catalogue format's dtype on engine='jax', not {dt}")
    idx = lax.bitcast_convert_type(x, jnp.dtype(fmt.uint_dtype)).astype(jnp.int32)
    return jnp.asarray(_widening_table(fmt))[idx]


def _to_format_bits(mag_bits, fmt):
    """binary32 bits of non-negative values of ``fmt`` (finite, each exactly one of the
    format's values) -> the format's codes (uint32), by field arithmetic."""
    _, mag, unit, _, zero = _f32_parts(mag_bits)
    n = 32 - lax.clz(mag).astype(jnp.int32)
    en = unit + n - 1  # the value's exponent
    man_mask = _U((1 << fmt.man_bits) - 1)
    normal = (lax.shift_left((en - fmt.emin + 1).astype(_U), _U(fmt.man_bits))
              | (_shift(mag, fmt.man_bits - (n - 1)) & man_mask))
    sub = _shift(mag, unit - (fmt.emin - fmt.man_bits))
    return jnp.where(zero, _U(0), jnp.where(en >= fmt.emin, normal, sub))


def _shift(x, s):
    """x << s for s >= 0, x >> -s for s < 0 (|s| < 32), uint32."""
    left = lax.shift_left(x, jnp.clip(s, 0, 31).astype(_U))
    right = lax.shift_right_logical(x, jnp.clip(-s, 0, 31).astype(_U))
    return jnp.where(s >= 0, left, right)


def flip_array(faults) -> np.ndarray:
    """Output-bit-flip faults as data: an (n, 5) int32 array of rows
    (gemm, group, row, col, bit) (:data:`FLIP_FIELDS`), one per
    :class:`models.OutputBitFlip` (a row with gemm -1 flips nothing)."""
    rows = []
    for f in faults:
        if not isinstance(f, OutputBitFlip):
            raise TypeError(f"faults must be OutputBitFlip values, not {type(f).__name__}")
        rows.append((f.gemm, f.group, f.row, f.col, f.bit))
    return np.array(rows, np.int32).reshape(len(rows), len(FLIP_FIELDS))


def _flip(d, index: int, flips):
    """D (G, M, N) with the bits of ``flips`` ((n, 5) int32 rows) that target GEMM
    ``index`` flipped (traceable; rows naming other GEMMs or out of range do nothing:
    :meth:`AcceleratedFunction.inject_many` checks ranges before tracing)."""
    width = np.dtype(d.dtype).itemsize * 8
    ut = jnp.dtype(f"uint{width}")
    bits = lax.bitcast_convert_type(d, ut)
    G, M, N = d.shape
    g = jnp.arange(G)[:, None, None]
    r = jnp.arange(M)[None, :, None]
    c = jnp.arange(N)[None, None, :]
    for i in range(flips.shape[0]):
        f = flips[i]
        hit = (f[0] == index) & (g == f[1]) & (r == f[2]) & (c == f[3])
        mask = lax.shift_left(jnp.ones((), ut), jnp.clip(f[4], 0, width - 1).astype(ut))
        bits = jnp.where(hit, bits ^ mask, bits)
    return lax.bitcast_convert_type(bits, d.dtype)


class JaxInterpreter(JaxprEvaluator):
    """One traced walk of a jaxpr with its GEMMs on the JAX engine.

    Args:
        acc: the :class:`models.Accelerator` (``engine="jax"``).
        flips: None, or an (n, 5) int32 array (possibly traced) of output bit flips
            (see :func:`flip_array`).
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
        self.matmul = matmul if matmul is not None else functools.partial(_engine_matmul, acc)
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
        ns = str(eqn.source_info.name_stack)
        name = "/".join(s for s in (scope, ns, eqn.primitive.name) if s)
        site = GemmSite(len(self.sites), name, eqn.primitive.name, *shape, tuple(eqn.outvars[0].aval.shape),
                        (), where)
        self.sites.append(site)
        return site

    def gemm(self, eqn, invals, key, scope, tainted):
        why = unroutable(eqn)
        if why:
            return self.native_gemm(eqn, invals, key, scope, tainted, why)[0]
        lhs, rhs = invals
        if np.dtype(lhs.dtype) != np.dtype(rhs.dtype):  # a mixed GEMM: JAX's type promotion first
            dt = jnp.result_type(lhs.dtype, rhs.dtype)
            lhs, rhs = lhs.astype(dt), rhs.astype(dt)
        prim, params = eqn.primitive, dict(eqn.params)
        out_dtype = eqn.outvars[0].aval.dtype
        acc = self.acc
        index = len(self.sites)
        shape_box = []

        def simulated(x, y, flips, zero):
            qa, qb = round_operand_jax(acc, x), round_operand_jax(acc, y)
            if prim.name == "dot_general":
                a, b, assemble = lower_dot_general(qa, qb, params["dimension_numbers"], xp=jnp)
            else:
                a, b, assemble = lower_conv(qa, qb, xp=jnp, **params)
            shape_box.append((a.shape[0], a.shape[1], a.shape[2], b.shape[2]))
            d = self.matmul(a, b)
            if flips is not None:
                d = _flip(d, index, flips)
            return _pin_floating(assemble(d).astype(out_dtype), zero)

        def exact(x, y):
            return prim.bind(x, y, **prim.get_bind_params(params))

        out = _straight_through(simulated, exact)(lhs, rhs, self.flips, self._zero)
        self._site(eqn, scope, shape_box[0], "jax")
        return out

    def native_gemm(self, eqn, invals, key, scope, tainted, why):
        if self.fallback != "native":
            raise NotImplementedError(
                f"the bridge cannot route {_describe(eqn)} to the JAX engine ({why}); pass "
                f"fallback='native' to accelerated() to run it natively (listed with where='native')")
        prim = eqn.primitive
        outs = prim.bind(*invals, **prim.get_bind_params(eqn.params))
        outs = list(outs) if prim.multiple_results else [outs]
        self._site(eqn, scope, (0, 0, 0, 0), "native")
        return outs


def _engine_matmul(acc, a, b):
    """D (G, M, N) = A @ B (C = +0) on the JAX engine with the accelerator's settings."""
    G, M, K = a.shape
    N = b.shape[2]
    if K % acc.split_k:
        raise ValueError(f"K must be a multiple of split_k={acc.split_k}, not {K} "
                         f"(a GEMM of shape ({M}, {K}) @ ({K}, {N}))")
    return jax_matmul(a, b, jnp.zeros((G, M, N), acc.acc_dtype), profile=acc.profile,
                      input_format="tf32" if acc.input_format == "tf32" else None, split_k=acc.split_k)


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
