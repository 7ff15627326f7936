"""The fast path: fault-free GEMM through a datapath profile, bit-exact.

``matmul`` validates its arguments, unpacks the frozen format and profile into
integers and hands arrays to the kernels in :mod:`simulator._kernels`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from . import _kernels as K
from ._formats import Format, get_format
from ._profiles import DatapathProfile, StepRule, get_profile

__all__ = ["matmul", "RoundingTarget", "rounding_targets", "SPLIT_REDUCTIONS", "check_split_k", "check_gemm_args", "fused_layout", "input_format_of", "operand_arrays", "step_params", "step_layout",
           "flush_zero_exp", "operand_table", "scale_table", "general_step", "check_scales",
           "check_scale_support"]

# the input formats whose arrays' dtype names them (float32 arrays must say "tf32"),
# and the accumulator formats; dtypes are the formats' own (Format.dtype)
_TYPED_INPUTS = ("fp16", "bf16", "e4m3", "e5m2", "e4m3fnuz", "e5m2fnuz", "e2m1", "e2m3", "e3m2")
_FLOAT32_INPUTS = ("tf32", "fp32")  # float32 arrays: the caller says which
_PRECISIONS = {"x1": 1, "x3": 2, "x6": 3}  # bf16 parts of a float32 value (XLA's BF16_BF16_F32_Xn)
SPLIT_REDUCTIONS = ("sequential", "butterfly", "pairwise")
_ACCUMULATORS = ("fp32", "fp16")
# multiply-accumulates below which a GEMM runs serially: starting a parallel region
# costs about as much as this much work (and far more on a loaded machine)
_PARALLEL_MACS = 1 << 18


def _format_of_dtype(dtype, names) -> Format | None:
    return next((get_format(n) for n in names if get_format(n).dtype == dtype), None)


def _bits64(x: float) -> np.uint64:
    return np.array([x], np.float64).view(np.uint64)[0]


def input_format_of(dtype, input_format=None) -> Format:
    """The catalogue format of an input array's dtype (float32 needs ``input_format="tf32"``)."""
    dtype = np.dtype(dtype)
    if input_format is not None:
        if not isinstance(input_format, (str, Format)):
            raise TypeError(f"input_format must be a format name such as 'tf32', not {type(input_format).__name__}")
        names = _TYPED_INPUTS + _FLOAT32_INPUTS
        try:
            fmt = get_format(input_format)
        except ValueError:
            raise ValueError(f"input_format must be one of {names}, not {input_format!r}") from None
        want = fmt.dtype if fmt.name in names else None
        if want is None:
            raise ValueError(f"input_format must be one of {names}, not {input_format!r}")
        if dtype != want:
            raise TypeError(f"input_format={fmt.name!r} needs {want} arrays, not {dtype}")
        return fmt
    fmt = _format_of_dtype(dtype, _TYPED_INPUTS)
    if fmt is not None:
        return fmt
    if dtype == np.float32:
        raise TypeError("float32 inputs need input_format='tf32' or 'fp32' (the matrix units take tf32, "
                        "not binary32, except where a profile has an fp32 rule)")
    raise TypeError(f"inputs must be float16, bfloat16, float8_e4m3fn, float8_e5m2, float8_e4m3fnuz, "
                    f"float8_e5m2fnuz, float4_e2m1fn, float6_e2m3fn, float6_e3m2fn or float32 "
                    f"(with input_format='tf32' or 'fp32'), not {dtype}")


def _operand_from_bits(bits: np.ndarray, fmt: Format):
    vals = fmt.decode(bits)
    _, exp, _ = fmt.fields(bits)
    e = np.maximum(exp - fmt.bias, fmt.emin)
    e = np.where((vals == 0) | ~np.isfinite(vals), K.SENTINEL, e).astype(np.int16)
    return vals, e


@functools.lru_cache(maxsize=None)
def _operand_tables(fmt: Format, dtype=np.float64):
    """(values as ``dtype``, exponents) for every encoding of a format of at most 16 bits."""
    vals, e = _operand_from_bits(fmt.all_bit_patterns(), fmt)
    vals = vals.astype(dtype)  # exact: the caller asks for binary32 only where it holds every value
    vals.setflags(write=False)
    e.setflags(write=False)
    return vals, e


def operand_arrays(x: np.ndarray, fmt: Format, rule: StepRule, dtype=np.float64):
    """Input array -> (values as ``dtype``, int16 alignment exponents), same shape.

    The alignment exponent of a nonzero finite value is its unbiased exponent, at
    least the format's ``emin`` (subnormals); zeros, infinities and NaNs get
    :data:`simulator._kernels.SENTINEL`.  float32 arrays are narrowed to tf32 by
    ``rule.operand_rounding`` first.
    """
    if fmt.name == "tf32":
        x32 = np.ascontiguousarray(x, np.float32)
        if rule.operand_rounding == "rz":
            bits = x32.view(np.uint32) & np.uint32(0xFFFFE000)
        else:
            bits = fmt.encode(x32, "rne")
        vals, e = _operand_from_bits(bits, fmt)
        vals = vals.astype(dtype)
    else:
        # formats of at most 16 bits: a table lookup per element
        tv, te = _operand_tables(fmt, np.dtype(dtype).type)
        idx = np.ascontiguousarray(x).view(fmt.uint_dtype)
        if fmt.width < 8 * fmt.uint_dtype.itemsize and not fmt.container_shift:
            idx = idx & fmt.uint_dtype.type((1 << fmt.width) - 1)  # FP4/FP6: one code in the low bits
        vals, e = np.empty(idx.shape, tv.dtype), np.empty(idx.shape, te.dtype)
        K.gather_operands(idx.reshape(-1), tv, te, vals.reshape(-1), e.reshape(-1))
    return np.ascontiguousarray(vals), np.ascontiguousarray(e)


def step_layout(rule: StepRule, K_: int):
    """Where each K position goes in the kernels' layout, and the layout's shape.

    Each step of ``rule.k`` positions is laid out pass by pass, each pass padded to a
    multiple of 4 positions (the kernels take four per sweep).  Returns
    ``(index, n_pass, pass_len)``: ``index`` (steps * n_pass * pass_len,) int64 holds
    the source K position of every laid-out position, or ``K_`` for padding (a zero
    column).  Zero terms change nothing: they take no part in the alignment exponent
    and add 0; and the sum within a pass is exact, so its order is free.
    """
    pattern = rule.passes
    n_pass = max(pattern) + 1
    members = [[k for k in range(rule.k) if pattern[k % len(pattern)] == p] for p in range(n_pass)]
    pass_len = -(-max(len(m) for m in members) // 4) * 4
    steps = -(-K_ // rule.k)
    index = np.full((steps, n_pass, pass_len), K_, np.int64)
    for p, mem in enumerate(members):
        index[:, p, :len(mem)] = np.arange(steps)[:, None] * rule.k + np.array(mem, np.int64)[None, :]
    index[index >= K_] = K_
    return index.reshape(-1), n_pass, pass_len


def _lay_out(v: np.ndarray, e: np.ndarray, index: np.ndarray, axis: int):
    """Gather K positions (axis) by ``index``, where index == K means a zero term."""
    K_ = v.shape[axis]
    if index.size == K_ and np.array_equal(index, np.arange(K_)):
        return v, e
    pad_shape = list(v.shape)
    pad_shape[axis] = 1
    v = np.concatenate([v, np.zeros(pad_shape, v.dtype)], axis=axis)
    e = np.concatenate([e, np.full(pad_shape, K.SENTINEL, np.int16)], axis=axis)
    return (np.ascontiguousarray(np.take(v, index, axis=axis)),
            np.ascontiguousarray(np.take(e, index, axis=axis)))


@dataclass(frozen=True)
class RoundingTarget:
    """Where a step rounds a value: ``man_bits`` mantissa bits kept, ``emin`` the smallest
    normal exponent (below it, subnormal spacing), ``emax`` the largest exponent (the
    largest finite value has all ``man_bits`` ones there), ``rne`` round to nearest even
    (else toward zero), ``overflow_inf`` overflow to infinity (else, toward zero, to the
    largest finite value).  Both engines of the core (the Numba kernels and
    ``models.jax_matmul``) take their roundings from :func:`rounding_targets`."""

    man_bits: int
    emin: int
    emax: int
    rne: bool
    overflow_inf: bool

    def kernel(self) -> K.Rounding:
        """The :class:`~simulator._kernels.Rounding` record of the Numba kernels."""
        top = _bits64(float((1 << (self.man_bits + 1)) - 1) * 2.0 ** (self.emax - self.man_bits))
        return K.rounding(self.man_bits, self.emin, top, self.rne, self.overflow_inf)


def rounding_targets(rule: StepRule, acc: Format) -> tuple:
    """The three roundings of a step of ``rule`` into accumulator ``acc`` (fp32 or fp16),
    as :class:`RoundingTarget`: (between passes: binary32 with the rule's
    ``result_man_bits`` by its ``rounding``; into the accumulator: the same for a fused
    C into fp32, RNE binary32 when C is added after, RNE binary16 into fp16; the binary32
    RNE addition of C added after)."""
    f32 = get_format("fp32")
    ovf = rule.overflow == "inf"
    pas = RoundingTarget(rule.result_man_bits, f32.emin, f32.emax, rule.rounding == "rne", ovf)
    add = RoundingTarget(f32.man_bits, f32.emin, f32.emax, True, ovf)
    if acc.name == "fp16":
        out = RoundingTarget(acc.man_bits, acc.emin, acc.emax, True, ovf)
    elif rule.c_mode == "after":
        out = add
    else:
        out = pas
    return pas, out, add


def check_split_k(split_k, split_reduce: str, Kd: int) -> None:
    """Refuse a split-K that ``matmul`` cannot run on K = Kd: split_k a positive int
    dividing K, split_reduce one of :data:`SPLIT_REDUCTIONS` (``"butterfly"`` and
    ``"pairwise"`` need split_k a power of two).  Both engines of the core check here."""
    if not isinstance(split_k, (int, np.integer)) or isinstance(split_k, bool):
        raise TypeError(f"split_k must be an int, not {type(split_k).__name__}")
    if split_k < 1 or (Kd % split_k != 0 if Kd else split_k != 1):
        raise ValueError(f"split_k must be a positive divisor of K={Kd}, not {split_k}")
    if split_reduce not in SPLIT_REDUCTIONS:
        raise ValueError(f"split_reduce must be one of {SPLIT_REDUCTIONS}, not {split_reduce!r}")
    if split_reduce != "sequential" and split_k & (split_k - 1):
        raise ValueError(f"split_reduce={split_reduce!r} needs split_k a power of two, not {split_k}")


def step_params(rule: StepRule, acc: Format) -> K.FusedStep:
    """A rule and an accumulator format (fp32 or fp16) -> the :class:`~simulator._kernels.FusedStep`
    record the kernels take (frac -1 for an exact IEEE step; its ``out`` rounding is
    the scalar FMA's too)."""
    pas, out, add = rounding_targets(rule, acc)
    return K.FusedStep(np.int64(-1 if rule.frac_bits is None else rule.frac_bits), rule.c_mode == "fused",
                       pas.kernel(), out.kernel(), add.kernel(),
                       np.int64(K.SENTINEL if rule.zero_exp is None else rule.zero_exp))


def _check_array(name, x, ndim):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, not {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, not {x.ndim}-D with shape {x.shape}")


def _products_exact_in_fp32(fmt: Format) -> bool:
    """Whether every product of two values of ``fmt`` is exact in binary32.

    True when the significands' product fits 24 bits, the smallest product is a
    multiple of 2**-149 (so binary32 subnormals hold it) and the largest is finite.
    """
    return (2 * (fmt.man_bits + 1) <= 24 and 2 * (fmt.emin - fmt.man_bits) >= -149
            and fmt.max_finite ** 2 < 2.0 ** 128)


def _narrow(x: np.ndarray, fmt: Format, rule: StepRule) -> np.ndarray:
    """float32 inputs -> float32 holding their tf32 values (by ``rule.operand_rounding``)."""
    if fmt.name != "tf32":
        return x
    x32 = np.ascontiguousarray(x, np.float32)
    if rule.operand_rounding == "rz":
        return (x32.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)
    return fmt.encode(x32, "rne").view(np.float32)


def _fused_in_fp32(fmt: Format, rule: StepRule) -> bool:
    """Whether binary32 holds every product of ``fmt`` values and every aligned one."""
    return _products_exact_in_fp32(fmt) and rule.frac_bits - 2 * fmt.emin < 127


def fused_layout(av, ae, bv, be, fmt: Format, rule: StepRule, dtype=None):
    """Operands in K order -> the layout :func:`simulator._kernels.fused_step_rows` reads.

    av (..., M, K), bv (..., K, N) values and ae, be int16 alignment exponents (as
    :func:`operand_arrays`; the same leading batch axes, or none).  Returns a
    :class:`~simulator._kernels.FusedOperands` ``(av, ae, bv, be, a_bad, b_bad, n_pass,
    pass_len, p_floor)``: each step laid out pass by pass (:func:`step_layout`),
    values in binary32 where that is exact (``dtype``, when given, says which), the flags of sweeps of four positions
    that hold an inf or NaN (a_bad (..., M, K' // 4), b_bad (..., K' // 4)), and the
    floor of a nonzero product's alignment exponent.
    """
    vdt = dtype if dtype is not None else (np.float32 if _fused_in_fp32(fmt, rule) else np.float64)
    av, bv = np.ascontiguousarray(av, vdt), np.ascontiguousarray(bv, vdt)
    ae, be = np.ascontiguousarray(ae, np.int16), np.ascontiguousarray(be, np.int16)
    index, n_pass, pass_len = step_layout(rule, av.shape[-1])
    av, ae = _lay_out(av, ae, index, axis=av.ndim - 1)
    bv, be = _lay_out(bv, be, index, axis=bv.ndim - 2)
    # sweeps of four K positions that hold an inf or NaN take the kernels' special path
    fin_a, fin_b = np.isfinite(av), np.isfinite(bv)
    lead, (M, Kl), N = av.shape[:-2], av.shape[-2:], bv.shape[-1]
    a_bad = np.zeros(lead + (M, Kl // 4), bool) if fin_a.all() else \
        ~fin_a.reshape(lead + (M, Kl // 4, 4)).all(axis=-1)
    b_bad = np.zeros(lead + (Kl // 4,), bool) if fin_b.all() else \
        ~fin_b.reshape(lead + (Kl // 4, 4, N)).all(axis=(-2, -1))
    return K.FusedOperands(av, ae, bv, be, a_bad, b_bad, np.int64(n_pass), np.int64(pass_len),
                           np.int64(2 * fmt.emin))


def _accumulate(a, b, acc, rule: StepRule, fmt: Format, acc_fmt: Format) -> np.ndarray:
    """acc + a @ b under one rule.

    a (M, K), b (K, N): input arrays (dtype of ``fmt``); acc (M, N) float32 or float64
    holding accumulator values (exactly), updated in place when the path computes in
    its dtype.  Returns the result array (float32 or float64).  The fused rules
    (``frac_bits`` set) also take a batch: a (G, M, K), b (G, K, N), acc (G, M, N).
    """
    sp = step_params(rule, acc_fmt)
    if rule.frac_bits is None:
        a, b = _narrow(a, fmt, rule), _narrow(b, fmt, rule)
        a32, b32 = a.astype(np.float32), b.astype(np.float32)  # exact widening
        # binary32 arithmetic is the exact FMA when every product is exact in binary32
        exact = _products_exact_in_fp32(fmt)
        # (fp32 inputs: a product of two 24-bit significands is never exact in binary32)
        if not exact and 2 * (fmt.man_bits + 1) <= 24 and np.isfinite(a32).all() and np.isfinite(b32).all():
            nz_a, nz_b = np.abs(a32[a32 != 0]).astype(np.float64), np.abs(b32[b32 != 0]).astype(np.float64)
            exact = nz_a.size == 0 or nz_b.size == 0 or (
                nz_a.min() * nz_b.min() >= 2.0 ** -126 and nz_a.max() * nz_b.max() < 2.0 ** 127)
        batch = acc.ndim == 3
        if acc_fmt.name == "fp32" and exact and sp.out.rne and sp.out.man == 23:
            acc32 = np.ascontiguousarray(acc, np.float32)
            a3, b3, c3 = (x if batch else x[None] for x in (a32, b32, acc32))
            K.fma_gemm_f32(np.ascontiguousarray(a3), np.ascontiguousarray(b3), c3, _threads(a3.shape, b3.shape))
            return acc32
        acc = np.ascontiguousarray(acc, np.float64)
        a64, b64 = np.ascontiguousarray(a32, np.float64), np.ascontiguousarray(b32, np.float64)
        for g in range(acc.shape[0] if batch else 0):
            K.fma_gemm(a64[g], b64[g], acc[g], sp.out)
        if not batch:
            K.fma_gemm(a64, b64, acc, sp.out)
        return acc
    acc = np.ascontiguousarray(acc, np.float64)
    # binary32 holds every product and every scaled product exactly: twice the lanes
    vdt = np.float32 if _fused_in_fp32(fmt, rule) else np.float64
    av, ae = operand_arrays(a, fmt, rule, vdt)
    bv, be = operand_arrays(b, fmt, rule, vdt)
    _fused(fused_layout(av, ae, bv, be, fmt, rule), sp, acc)
    return acc


def _fused(ops: K.FusedOperands, sp: K.FusedStep, acc: np.ndarray) -> None:
    """:func:`simulator._kernels.fused_gemm` on one GEMM (2-D operands and acc) or a
    batch (3-D), acc (float64, contiguous) updated in place."""
    if acc.ndim == 2:  # the kernel takes a batch: one GEMM is a batch of one
        ops = K.FusedOperands(*(x[None] for x in ops[:6]), *ops[6:])
    G = ops.a_val.shape[0]
    K.fused_gemm(ops, sp, acc.reshape((G,) + acc.shape[-2:]), _threads(ops.a_val.shape, ops.b_val.shape))


def _threads(a_shape, b_shape) -> int:
    """Threads for a batch of GEMMs (G, M, K) @ (G, K, N): one (serial) when it is too
    small to pay for waking the others."""
    G, M, Kd = a_shape
    return numba.get_num_threads() if G * M * Kd * b_shape[-1] >= _PARALLEL_MACS else 1


def _general_operand(x: np.ndarray, fmt: Format, rule: StepRule, dtype=np.float64):
    """Operand values (``dtype``, binary64 by default) and alignment exponents for the
    general kernels: flushed to +0 below the smallest normal when ``"inputs"`` is in
    ``rule.flush``; a zero operand's exponent is ``rule.zero_exp`` (or SENTINEL)."""
    if fmt.name == "fp32":
        v = np.ascontiguousarray(x, np.float64)
        e = np.where(np.isfinite(v) & (v != 0), np.maximum(np.frexp(v)[1] - 1, fmt.emin), K.SENTINEL)
        e = e.astype(np.int16)
    else:
        v, e = operand_arrays(x, fmt, rule, dtype)
    return flush_zero_exp(v, e, fmt, rule)


def flush_zero_exp(v, e, fmt: Format, rule: StepRule):
    """Operand values and int16 exponents (as :func:`operand_arrays`) -> as the rule's
    step reads them: flushed to +0 below the smallest normal when ``"inputs"`` is in
    ``rule.flush``; a zero operand's exponent ``rule.zero_exp`` (or SENTINEL)."""
    if "inputs" in rule.flush:
        tiny = np.abs(v) < fmt.smallest_normal
        v = np.where(tiny, 0.0, v).astype(v.dtype)
        e = np.where(tiny, K.SENTINEL, e).astype(np.int16)
    if rule.zero_exp is not None:
        e = np.where(v == 0, rule.zero_exp, e).astype(np.int16)
    return np.ascontiguousarray(v), np.ascontiguousarray(e)


def operand_table(fmt: Format, rule: StepRule):
    """(values float64, int16 exponents) of every code of an input format (codes at bit
    0, ``2**fmt.width`` of them), as the rule's step reads them (:func:`flush_zero_exp`):
    the cycle-level units decode (faulted) register bits through it."""
    codes = np.arange(1 << fmt.width, dtype=np.uint64) << np.uint64(fmt.container_shift)
    v, e = _operand_from_bits(codes.astype(fmt.uint_dtype), fmt)
    return flush_zero_exp(v.astype(np.float64), e, fmt, rule)


def scale_table(fmt: Format):
    """(values float64, int16 exponents) of the 256 codes of a scale format."""
    return _scale_operand(np.arange(256, dtype=np.uint8), fmt, 1, 256, "scale")


def _scaled_operands(a, b, rule: StepRule, fa: Format, fb: Format, scales, dtype):
    """The operands of a classic-form rule (:attr:`StepRule.classic_form`) as the classic
    fused kernel takes them: values ``dtype`` and int16 exponents, a zero operand's
    exponent ``rule.zero_exp``; power-of-two block scales (ue8m0) folded in, each value
    times its scale (exact) and each exponent plus the scale's.  Returns
    ``(av, ae, bv, be, p_floor)``, p_floor the floor of a nonzero product's exponent."""
    av, ae = _general_operand(a, fa, rule, dtype)
    bv, be = _general_operand(b, fb, rule, dtype)
    p_floor = fa.emin + fb.emin
    if scales is not None:
        sa, sb, sfmt = scales
        blk = av.shape[1] // sa.shape[1]
        sav, sae = _scale_operand(sa, sfmt, sa.shape[0], sa.shape[1], "scale_a")
        sbv, sbe = _scale_operand(sb, sfmt, sb.shape[1], sb.shape[0], "scale_b")
        av = av * np.repeat(sav, blk, axis=1)
        ae = (ae + np.repeat(sae, blk, axis=1)).astype(np.int16)
        bv = bv * np.repeat(sbv, blk, axis=0)
        be = (be + np.repeat(sbe, blk, axis=0)).astype(np.int16)
        p_floor += int(sae.min()) + int(sbe.min())
    return av, ae, bv, be, p_floor


def _accumulate_classic_form(a, b, acc, rule: StepRule, fa: Format, fb: Format, acc_fmt: Format, scales=None):
    """acc + a @ b on the classic fused kernel for a rule of :attr:`StepRule.classic_form`
    (``zero_exp`` as data), operands of one or two formats, power-of-two block scales
    or none; returns float64 values."""
    exact32 = scales is None and _fused_in_fp32(fa, rule) and _fused_in_fp32(fb, rule)
    vdt = np.float32 if exact32 else np.float64
    av, ae, bv, be, p_floor = _scaled_operands(a, b, rule, fa, fb, scales, vdt)
    lay = fused_layout(av, ae, bv, be, fa, rule, dtype=vdt)._replace(p_floor=np.int64(p_floor))
    acc = np.ascontiguousarray(acc, np.float64)
    _fused(lay, step_params(rule, acc_fmt), acc)
    return acc


def _scale_operand(s, fmt: Format | None, rows: int, nblk: int, name: str):
    """Scale codes -> (values, int16 exponents), (rows, nblk); (1, 1) ones when absent."""
    if s is None:
        return np.ones((1, 1)), np.zeros((1, 1), np.int16)
    bits = s.view(np.uint8) if s.dtype != np.uint8 else s
    v = fmt.decode(bits)
    _, ef, _ = fmt.fields(bits)
    e = np.where(np.isfinite(v) & (v != 0), np.maximum(ef - fmt.bias, fmt.emin), 0).astype(np.int16)
    return np.ascontiguousarray(v, np.float64), np.ascontiguousarray(e)


def clean_steps(av: np.ndarray, bv: np.ndarray, k_step: int) -> np.ndarray:
    """(M, ceil(K / k_step)) bool: True where step s of row i (K positions
    [s * k_step, (s + 1) * k_step)) meets only finite operand values (av (M, K), bv
    (K, N) float64) whose products stay below 2**128 in magnitude, so that the general
    kernel has no IEEE class to sort out there (:class:`simulator._kernels.GeneralOperands`).
    One pass of :func:`simulator._kernels.clean_steps_into` over the operands."""
    av, bv = np.ascontiguousarray(av, np.float64), np.ascontiguousarray(bv, np.float64)
    out = np.empty((av.shape[0], -(-av.shape[1] // k_step)), bool)
    K.clean_steps_into(av, bv, np.int64(k_step), out)
    return out


def clean_steps_reference(av: np.ndarray, bv: np.ndarray, k_step: int) -> np.ndarray:
    """:func:`clean_steps` in NumPy (the slow reference of its kernel)."""
    M, Kd = av.shape
    ns = -(-Kd // k_step)
    pad = ns * k_step - Kd
    with np.errstate(invalid="ignore"):
        ma = np.pad(np.abs(av), ((0, 0), (0, pad))).reshape(M, ns, k_step).max(axis=2)   # NaN stays NaN
        mb = np.pad(np.abs(bv), ((0, pad), (0, 0))).reshape(ns, k_step, -1).max(axis=(1, 2))
        ok = ma * mb[None, :] < float.fromhex("0x1p128")  # False for inf and NaN as well
    return np.ascontiguousarray(ok)


def _accumulate_general(a, b, acc, rule: StepRule, fa: Format, fb: Format, acc_fmt: Format, scales=None):
    """acc + a @ b under a rule with issue-13 fields (or mixed formats, or scales);
    returns float64 (fused tree) or float32 (pairwise tree) values.

    scales: None or (scale_a (M, K/blk), scale_b (K/blk, N), Format).
    """
    sp = step_params(rule, acc_fmt)
    if rule.tree == "pairwise":
        a32 = _general_operand(a, fa, rule)[0].astype(np.float32)  # exact: inputs are binary32 values
        b32 = _general_operand(b, fb, rule)[0].astype(np.float32)
        acc32 = np.ascontiguousarray(acc, np.float32)
        if "inputs" in rule.flush:
            acc32 = np.where(np.abs(acc32) < np.float32(acc_fmt.smallest_normal), np.float32(0), acc32)
        K.pairwise_gemm(np.ascontiguousarray(a32), np.ascontiguousarray(b32), acc32, rule.k,
                        "nodes" in rule.flush, "accumulator" in rule.flush)
        return acc32
    av, ae = _general_operand(a, fa, rule)
    bv, be = _general_operand(b, fb, rule)
    acc = np.ascontiguousarray(acc, np.float64)
    if "inputs" in rule.flush:
        acc = np.where(np.abs(acc) < acc_fmt.smallest_normal, 0.0, acc)
    M, Kd = av.shape
    N = bv.shape[1]
    if scales is not None:
        sa, sb, sfmt = scales
        blk = Kd // sa.shape[1]
        sav, sae = _scale_operand(sa, sfmt, M, sa.shape[1], "scale_a")
        sbv, sbe = _scale_operand(sb, sfmt, N, sb.shape[0], "scale_b")
    else:
        blk = 0
        sav, sae = _scale_operand(None, None, 1, 1, "")
        sbv, sbe = sav, sae
    ops = K.GeneralOperands(av, ae, bv, be, sav, sae, np.ascontiguousarray(sbv), np.ascontiguousarray(sbe),
                            np.int64(blk), clean_steps(av, bv, rule.k))
    g = general_step(rule, sp)
    narrow = narrow_floor(av, ae, bv, be, rule, fa, fb, scales)
    if narrow is None:
        K.general_fused_gemm(ops, acc, g)
    else:
        K.general_fused_gemm(ops, acc, g, av.astype(np.float32), bv.astype(np.float32), np.int64(narrow))
    return acc


def narrow_floor(av, ae, bv, be, rule: StepRule, fa: Format, fb: Format, scales):
    """The floor of a nonzero product's alignment exponent (int) when the clean steps of
    a GEMM may take their terms in binary32 (:func:`simulator._kernels._aligned_clean_cols`),
    else None.  They may for a single-pass c_mode "aligned" rule without groups or
    scales on operands of one format whose products have at most 24 significant bits,
    when every nonzero product is a normal binary32 number (at least 2**-126: exact),
    2**(frac_bits - floor) is one too, and four aligned terms (each below
    2**(frac_bits + 2)) fit int32.  A clean step's products stay below 2**128, and with
    at most 24 significant bits below binary32's largest value.  av, bv: values
    (float64); ae, be: int16 alignment exponents (:func:`_general_operand`)."""
    if (rule.c_mode != "aligned" or max(rule.passes) != 0 or rule.group_k != 1 or scales is not None or fa != fb
            or 2 * (fa.man_bits + 1) > 24 or rule.frac_bits + 2 + 2 > 31 or av.size == 0 or bv.size == 0):
        return None
    ea, va = K.nonzero_floor(av.reshape(-1), ae.reshape(-1))
    eb, vb = K.nonzero_floor(bv.reshape(-1), be.reshape(-1))
    if ea == 32767 or eb == 32767:
        return None  # no nonzero product: nothing to gain
    floor = int(ea) + int(eb)
    if rule.frac_bits - floor > 126 or va * vb < float.fromhex("0x1p-126"):
        return None
    return floor


def general_step(rule: StepRule, sp: K.FusedStep) -> K.GeneralStep:
    """A rule with issue-13 fields -> the :class:`~simulator._kernels.GeneralStep` record."""
    c_mode = {"fused": K.C_FUSED, "after": K.C_AFTER, "aligned": K.C_ALIGNED}[rule.c_mode]
    zero = K.SENTINEL if rule.zero_exp is None else rule.zero_exp
    return K.GeneralStep(np.int64(rule.k), np.int64(rule.group_k), rule.zero_exp is not None, np.int64(zero),
                         np.int64(rule.frac_bits), np.int64(c_mode), np.array(rule.passes, np.int64),
                         np.int64(max(rule.passes) + 1), np.int64(rule.sum_frac_bits), np.int64(rule.c_frac_bits),
                         rule.align_rounding == "rd", rule.merge_rounding == "rd",
                         np.int64(-1 if rule.c_drop is None else rule.c_drop), rule.product_overflow == "inf",
                         rule.zero_result == "signed", sp.pas, sp.out, sp.f32)


def _kernel_of(rule: StepRule, fa: Format, fb: Format, scales) -> str:
    """Which kernels run a GEMM, from the rule's fields: ``"classic"`` (the original
    vocabulary, one format, no scales: :func:`_accumulate`), ``"classic_form"``
    (:attr:`StepRule.classic_form` with two formats, ``zero_exp`` or power-of-two block
    scales: the classic fused kernel with them as data) or ``"general"``."""
    if rule.frac_bits is None or (rule.is_classic and fa == fb and scales is None):
        return "classic"
    if rule.classic_form and (scales is None or scales[2].man_bits == 0):
        return "classic_form"
    return "general"


def check_gemm_args(prof: DatapathProfile, a, b, c, input_format):
    """Validate a GEMM's operands against a profile for the cycle-level arrays
    (one dtype for A and B): :func:`matmul`'s checks, then what the arrays do not model.

    Returns ``(input Format, StepRule, accumulator Format, c, (M, K, N))`` with ``c``
    a float32 zero matrix when None.  TypeError/ValueError name the bad argument.
    """
    _check_array("a", a, 2)
    _check_array("b", b, 2)
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have the same dtype, not {a.dtype} and {b.dtype}")
    fa, _, rule, acc_fmt, c, shape, _ = _gemm_args(prof, a, b, c, input_format, None, None)
    return fa, rule, acc_fmt, c, shape


def _split_bf16(x: np.ndarray, n: int):
    """float32 array -> n bf16 arrays (hi, mid, lo): each part the RNE bf16 of what the
    parts before it left (exact binary32 subtractions), as XLA's BF16_BF16_F32_Xn split."""
    bf16 = get_format("bf16").dtype
    rest = np.ascontiguousarray(x, np.float32)
    parts = []
    for _ in range(n):
        p = rest.astype(bf16)
        parts.append(p)
        with np.errstate(invalid="ignore"):
            rest = (rest - p.astype(np.float32)).astype(np.float32)
    return parts


# the partial products of XLA's split algorithms, smallest first (the order is assumed)
_SPLIT_TERMS = {1: [(0, 0)], 2: [(1, 0), (0, 1), (0, 0)],
                3: [(2, 0), (1, 1), (0, 2), (1, 0), (0, 1), (0, 0)]}


def _gemm_args(prof: DatapathProfile, a, b, c, input_format, variant, precision):
    """Validate a GEMM's operands for :func:`matmul` (mixed A/B formats allowed).

    Returns ``(fa, fb, rule, acc_fmt, c, (M, K, N), n_parts)``; ``n_parts`` > 0 when
    float32 inputs are split into that many bf16 parts (``precision``).
    """
    _check_array("a", a, 2)
    _check_array("b", b, 2)
    fa = input_format_of(a.dtype, input_format)
    fb = input_format_of(b.dtype, input_format if b.dtype == np.float32 else None)
    if fa != fb and (fa.container_bits > 8 or fb.container_bits > 8):
        # mixed operands exist only in the 8-bit-and-narrower kinds (e4m3 x e5m2, f8f6f4)
        raise TypeError(f"a and b must have the same dtype, or both be formats of at most 8 bits, "
                        f"not {a.dtype} and {b.dtype}")
    n_parts = 0
    if precision is not None:
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(_PRECISIONS)} or None, not {precision!r}")
        if fa.name != "fp32" or fb.name != "fp32" or "bf16" not in prof.rules:
            raise ValueError(f"precision needs float32 inputs with input_format='fp32' and a profile with a bf16 "
                             f"rule, not {fa.name} x {fb.name} on {prof.name!r}")
        n_parts = _PRECISIONS[precision]
        rule = prof.rule("bf16", variant=variant)
    else:
        if fa.name == "fp32" and "fp32" not in prof.rules and "bf16" in prof.rules:
            raise ValueError(f"profile {prof.name!r} takes float32 inputs only split into bf16 parts: "
                             f"precision must be 'x1', 'x3' or 'x6', not None")
        rule = prof.rule(fa.name, fb.name, variant=variant)
    M, Kd = a.shape
    if b.shape[0] != Kd:
        raise ValueError(f"b must have shape ({Kd}, N) to match a's K={Kd}, not {b.shape}")
    N = b.shape[1]
    if c is None:
        c = np.zeros((M, N), np.float32)
    _check_array("c", c, 2)
    acc_fmt = _format_of_dtype(c.dtype, _ACCUMULATORS)
    if acc_fmt is None:
        raise TypeError(f"c must be float32 or float16, not {c.dtype}")
    if c.shape != (M, N):
        raise ValueError(f"c must have shape {(M, N)}, not {c.shape}")
    if acc_fmt.name not in prof.accumulators:
        raise ValueError(f"profile {prof.name!r} supports accumulators {prof.accumulators}, not {acc_fmt.name}")
    return fa, fb, rule, acc_fmt, c, (M, Kd, N), n_parts


def check_scale_support(prof: DatapathProfile, rule: StepRule, fa: Format, precision=None) -> None:
    """ValueError when block scales are given for a GEMM whose unit applies none: an
    exact-FMA rule (``frac_bits`` None), a pairwise tree, or ``precision``'s bf16 parts
    (both engines call this, so neither ignores the scales silently)."""
    why = ("precision splits the float32 inputs into bf16 parts" if precision is not None else
           "its rule is an exact FMA" if rule.frac_bits is None else
           "its rule is a pairwise binary32 tree" if rule.tree == "pairwise" else "")
    if why:
        raise ValueError(f"scale_a and scale_b must be None for profile {prof.name!r} {fa.name} ({why}, which "
                         f"applies no block scales), not given")


def check_scales(scale_a, scale_b, scale_format, M, Kd, N, fa: Format):
    """Validate block scales -> None or (scale_a, scale_b, Format)."""
    if scale_a is None and scale_b is None:
        if scale_format is not None:
            raise ValueError("scale_format must be None without scale_a and scale_b, not "
                             f"{scale_format!r}")
        return None
    if scale_a is None or scale_b is None:
        raise ValueError("scale_a and scale_b must be given together, not one of them")
    _check_array("scale_a", scale_a, 2)
    _check_array("scale_b", scale_b, 2)
    if scale_format not in ("ue8m0", "ue4m3"):
        raise ValueError(f"scale_format must be 'ue8m0' or 'ue4m3', not {scale_format!r}")
    sfmt = get_format(scale_format)
    for name, x in (("scale_a", scale_a), ("scale_b", scale_b)):
        if x.dtype.itemsize != 1 or x.dtype.kind not in "uV" and x.dtype != (sfmt.dtype or np.uint8):
            if x.dtype != np.uint8 and x.dtype != sfmt.dtype:
                raise TypeError(f"{name} must be uint8 codes (or {sfmt.dtype}), not {x.dtype}")
    nb = scale_a.shape[1]
    if nb < 1 or Kd % nb or scale_a.shape[0] != M or scale_b.shape != (nb, N):
        raise ValueError(f"scale_a must be (M, K/block) = ({M}, K/block) and scale_b (K/block, N) with the "
                         f"block dividing K={Kd}, not {scale_a.shape} and {scale_b.shape}")
    return np.ascontiguousarray(scale_a).view(np.uint8), np.ascontiguousarray(scale_b).view(np.uint8), sfmt


def _run(a, b, acc, rule: StepRule, fa: Format, fb: Format, acc_fmt: Format, scales):
    """acc + a @ b under one rule, on the kernels the rule needs."""
    kind = _kernel_of(rule, fa, fb, scales)
    if kind == "classic":
        return _accumulate(a, b, acc, rule, fa, acc_fmt)
    if kind == "classic_form":
        return _accumulate_classic_form(a, b, acc, rule, fa, fb, acc_fmt, scales)
    return _accumulate_general(a, b, acc, rule, fa, fb, acc_fmt, scales)


def _reduce(parts, how: str):
    """Sum float32 partial results in binary32 round to nearest even, in the order ``how``."""
    f32 = np.float32
    p = [x.astype(f32) for x in parts]
    with np.errstate(over="ignore", invalid="ignore"):
        if how == "sequential":
            total = p[0]
            for x in p[1:]:
                total = total + x
            return total
        if how == "butterfly":  # halving strides: p[i] += p[i + S/2], then S/4, ...
            s = len(p) // 2
            while s >= 1:
                for i in range(s):
                    p[i] = p[i] + p[i + s]
                s //= 2
            return p[0]
        while len(p) > 1:  # pairwise: neighbours, level by level
            p = [p[i] + p[i + 1] for i in range(0, len(p), 2)]
        return p[0]


def matmul(a, b, c=None, *, profile="hopper", input_format=None, split_k=1, split_reduce="sequential",
           scale_a=None, scale_b=None, scale_format=None, precision=None, variant=None):
    """D = A @ B + C, bit for bit as the profile's matrix unit computes it.

    The GEMM walks K in steps of the profile's ``k`` products (zero-padding the last),
    feeding each step's D into the next as its C, as a GEMM main loop chains
    ``mma`` instructions.

    A batch of GEMMs, D[g] = A[g] @ B[g] + C[g], is one call: a (G, M, K), b (G, K, N),
    c None or (G, M, N), block scales (G, ...) as below, D (G, M, N).

    Args:
        a: (M, K) array of float16, bfloat16, float8_e4m3fn, float8_e5m2,
            float8_e4m3fnuz, float8_e5m2fnuz, float4_e2m1fn, float6_e2m3fn,
            float6_e3m2fn, or float32 with ``input_format="tf32"`` or ``"fp32"``.
        b: (K, N) array of the same dtype, or of another format the profile's rule
            for a's format also covers (e4m3 x e5m2).
        c: (M, N) float32 or float16 accumulator, or None (+0, float32).
            Its dtype picks the accumulator format.
        profile: a name in :data:`simulator.PROFILES` or a :class:`DatapathProfile`.
        input_format: the input format's name; needed only for float32 (``"tf32"``,
            or ``"fp32"`` for profiles with an fp32 rule or with ``precision``).
        split_k: S >= 1 dividing K: K is cut into S equal contiguous chunks, each
            accumulated from zero, the partial results summed in binary32
            round-to-nearest-even in the order ``split_reduce`` and C added last the
            same way (then rounded to nearest even into float16 for a float16
            accumulator).
        split_reduce: ``"sequential"`` (((p0 + p1) + p2) + ...), ``"butterfly"``
            (halving strides: p[i] += p[i + S/2], then S/4, ..., as a reduction across
            GPU lanes) or ``"pairwise"`` (neighbours: (p0 + p1) + (p2 + p3) ...); the
            last two need S a power of two.
        scale_a, scale_b: block scales, (M, K/block) and (K/block, N) uint8 codes of
            ``scale_format`` (``"ue8m0"`` or ``"ue4m3"``): A's row i, K block q is scaled
            by scale_a[i, q], B's column j by scale_b[q, j].
        precision: float32 inputs on a profile with a bf16 rule (``"tpu"``): each value
            split into 1, 2 or 3 bf16 parts (``"x1"``, ``"x3"``, ``"x6"``, as XLA's
            BF16_BF16_F32_X1/X3/X6) and the partial GEMMs (1, 3 or 6) summed in binary32,
            smallest first, then C.
        variant: an instruction variant of the profile (``"legacy"``: CDNA2's non-_1k bf16).
    Returns:
        D, (M, N), with c's dtype (float32 when c is None).  NaN results carry the
        profile's NaN bits (host-NaN profiles: 0x7FC00000 / 0x7E00).
    """
    prof = get_profile(profile)
    if isinstance(a, np.ndarray) and a.ndim == 3:
        return _batched_matmul(prof, a, b, c, input_format=input_format, split_k=split_k,
                               split_reduce=split_reduce, scale_a=scale_a, scale_b=scale_b,
                               scale_format=scale_format, precision=precision, variant=variant)
    fa, fb, rule, acc_fmt, c, (M, Kd, N), n_parts = _gemm_args(prof, a, b, c, input_format, variant, precision)
    scales = check_scales(scale_a, scale_b, scale_format, M, Kd, N, fa)
    if scales is not None:
        check_scale_support(prof, rule, fa, precision)
    if rule.group_k > 1 and scales is None:
        raise ValueError(f"profile {prof.name!r} computes {fa.name} in scaled groups: scale_a and scale_b must be "
                         f"given, not None")
    check_split_k(split_k, split_reduce, Kd)
    if scales is not None and split_k > 1 and (Kd // split_k) % (Kd // scales[0].shape[1]):
        raise ValueError(f"split_k must cut K on scale-block boundaries, not {split_k}")

    # a float32 C is its own exact working copy; a float16 one is widened (exactly)
    c_vals = c.astype(np.float32 if c.dtype == np.float32 else np.float64)
    chunk = Kd // split_k if Kd else 0

    def gemm(k0, k1, acc):
        sc = None
        if scales is not None:
            blk = Kd // scales[0].shape[1]
            sc = (scales[0][:, k0 // blk:k1 // blk], scales[1][k0 // blk:k1 // blk], scales[2])
        if n_parts:
            pa, pb = _split_bf16(a[:, k0:k1], n_parts), _split_bf16(b[k0:k1], n_parts)
            bf16 = get_format("bf16")
            partial = [_run(pa[x], pb[y], np.zeros((M, N)), rule, bf16, bf16, acc_fmt, None)
                       for x, y in _SPLIT_TERMS[n_parts]]
            with np.errstate(over="ignore", invalid="ignore"):
                return _reduce(partial + [acc.astype(np.float32)], "sequential")
        return _run(a[:, k0:k1], b[k0:k1], acc, rule, fa, fb, acc_fmt, sc)

    if split_k == 1:
        acc = gemm(0, Kd, c_vals)
    else:
        parts = [gemm(s * chunk, (s + 1) * chunk, np.zeros((M, N))) for s in range(split_k)]
        total = _reduce(parts, split_reduce)
        with np.errstate(over="ignore", invalid="ignore"):
            acc = total + c_vals.astype(np.float32)
    return _deliver(acc, c.dtype, acc_fmt, prof)


def _deliver(acc, dtype, acc_fmt: Format, prof: DatapathProfile) -> np.ndarray:
    """The accumulator's values (exact in float32/float64) as D of ``dtype``, NaNs
    carrying the profile's NaN bits."""
    with np.errstate(over="ignore"):
        out = acc.astype(dtype)
    nan = np.isnan(acc)
    if nan.any():
        bits = out.view(acc_fmt.uint_dtype)
        if acc_fmt.name == "fp32":
            bits[nan] = 0x7FC00000 if prof.nan_fp32 is None else prof.nan_fp32
        else:
            bits[nan] = 0x7E00 if prof.nan_fp16 is None else prof.nan_fp16
    return out


def _batched_matmul(prof: DatapathProfile, a, b, c, **kw) -> np.ndarray:
    """:func:`matmul` of a batch: a (G, M, K), b (G, K, N), c None or (G, M, N).

    GEMMs on the fused kernels (no split, scales or bf16 parts) run in one kernel
    call; the others run one by one through :func:`matmul` (the same bits either way).
    """
    _check_array("a", a, 3)
    _check_array("b", b, 3)
    if c is not None:
        _check_array("c", c, 3)
    G = a.shape[0]
    if G < 1 or b.shape[0] != G or (c is not None and c.shape[0] != G):
        raise ValueError(f"a, b and c must hold the same number >= 1 of GEMMs along axis 0, not "
                         f"{a.shape[0]}, {b.shape[0]}{'' if c is None else f' and {c.shape[0]}'}")
    # every check of one GEMM, on the first (the others have the same dtypes and shapes)
    fa, fb, rule, acc_fmt, c0, (M, Kd, N), n_parts = _gemm_args(prof, a[0], b[0], None if c is None else c[0],
                                                                kw["input_format"], kw["variant"], kw["precision"])
    one_call = (kw["split_k"] == 1 and kw["scale_a"] is None and kw["scale_b"] is None and kw["precision"] is None
                and _kernel_of(rule, fa, fb, None) == "classic")
    if not one_call:
        sa, sb = kw.pop("scale_a"), kw.pop("scale_b")
        for name, x in (("scale_a", sa), ("scale_b", sb)):
            if x is not None and (np.ndim(x) != 3 or np.shape(x)[0] != G):
                raise ValueError(f"{name} of a batch must be 3-D with {G} along axis 0, not shape {np.shape(x)}")
        return np.stack([matmul(a[g], b[g], None if c is None else c[g], profile=prof, **kw,
                                scale_a=None if sa is None else sa[g], scale_b=None if sb is None else sb[g])
                         for g in range(G)])
    cdt = c0.dtype
    c = np.zeros((G, M, N), cdt) if c is None else c
    acc = _accumulate(a, b, c.astype(np.float32 if cdt == np.float32 else np.float64), rule, fa, acc_fmt)
    return _deliver(acc, cdt, acc_fmt, prof)
