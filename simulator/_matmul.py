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

__all__ = ["matmul", "check_gemm_args", "fused_layout", "input_format_of", "operand_arrays", "StepParams", "step_params", "step_layout"]

# the input formats whose arrays' dtype names them (float32 arrays must say "tf32"),
# and the accumulator formats; dtypes are the formats' own (Format.dtype)
_TYPED_INPUTS = ("fp16", "bf16", "e4m3", "e5m2")
_ACCUMULATORS = ("fp32", "fp16")


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
        try:
            fmt = get_format(input_format)
        except ValueError:
            raise ValueError(f"input_format must be one of 'fp16', 'bf16', 'tf32', 'e4m3', 'e5m2', "
                             f"not {input_format!r}") from None
        want = fmt.dtype if fmt.name in _TYPED_INPUTS + ("tf32",) else None
        if want is None:
            raise ValueError(f"input_format must be one of 'fp16', 'bf16', 'tf32', 'e4m3', 'e5m2', not {input_format!r}")
        if dtype != want:
            raise TypeError(f"input_format={fmt.name!r} needs {want} arrays, not {dtype}")
        return fmt
    fmt = _format_of_dtype(dtype, _TYPED_INPUTS)
    if fmt is not None:
        return fmt
    if dtype == np.float32:
        raise TypeError("float32 inputs need input_format='tf32' (the matrix units take tf32, not binary32)")
    raise TypeError(f"inputs must be float16, bfloat16, float8_e4m3fn, float8_e5m2 or float32 "
                    f"(with input_format='tf32'), not {dtype}")


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
class StepParams:
    """A step rule unpacked into the integers the kernels take (see ``fused_gemm``)."""

    k_step: int
    frac_bits: int  # -1 for an exact (IEEE fused) step
    c_fused: bool
    p_man: int
    p_emin: int
    p_max: np.uint64
    p_rne: bool
    o_man: int
    o_emin: int
    o_max: np.uint64
    o_rne: bool
    o_ovf: bool
    f32_max: np.uint64

    def fused_args(self):
        return (self.k_step, self.frac_bits, self.c_fused, self.p_man, self.p_emin, self.p_max, self.p_rne,
                self.o_man, self.o_emin, self.o_max, self.o_rne, self.o_ovf, self.f32_max)


def step_params(rule: StepRule, acc: Format) -> StepParams:
    """Unpack a rule and an accumulator format (fp32 or fp16) for the kernels."""
    f32 = get_format("fp32")
    mb = rule.result_man_bits
    p_max = _bits64(float((1 << (mb + 1)) - 1) * 2.0 ** (f32.emax - mb))
    if acc.name == "fp16":
        o_man, o_max, o_rne = acc.man_bits, _bits64(acc.max_finite), True
    elif rule.c_mode == "after":
        o_man, o_max, o_rne = 23, _bits64(f32.max_finite), True
    else:
        o_man, o_max, o_rne = mb, p_max, rule.rounding == "rne"
    return StepParams(rule.k, -1 if rule.frac_bits is None else rule.frac_bits, rule.c_mode == "fused",
                      mb, f32.emin, p_max, rule.rounding == "rne", o_man, acc.emin, o_max, o_rne,
                      rule.overflow == "inf", _bits64(f32.max_finite))


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


def fused_layout(av, ae, bv, be, fmt: Format, rule: StepRule):
    """Operands in K order -> the layout :func:`simulator._kernels.fused_step_rows` reads.

    av (M, K), bv (K, N) values and ae, be int16 alignment exponents (as
    :func:`operand_arrays`).  Returns ``(av, ae, bv, be, a_bad, b_bad, n_pass,
    pass_len, p_floor)``: each step laid out pass by pass (:func:`step_layout`), values
    in binary32 where that is exact, the flags of sweeps of four positions that hold
    an inf or NaN, and the floor of a nonzero product's alignment exponent.
    """
    vdt = np.float32 if _fused_in_fp32(fmt, rule) else np.float64
    av, bv = np.ascontiguousarray(av, vdt), np.ascontiguousarray(bv, vdt)
    ae, be = np.ascontiguousarray(ae, np.int16), np.ascontiguousarray(be, np.int16)
    index, n_pass, pass_len = step_layout(rule, av.shape[1])
    av, ae = _lay_out(av, ae, index, axis=1)
    bv, be = _lay_out(bv, be, index, axis=0)
    # sweeps of four K positions that hold an inf or NaN take the kernels' special path
    fin_a, fin_b = np.isfinite(av), np.isfinite(bv)
    a_bad = np.zeros((av.shape[0], av.shape[1] // 4), bool) if fin_a.all() else \
        ~fin_a.reshape(av.shape[0], -1, 4).all(axis=2)
    b_bad = np.zeros(bv.shape[0] // 4, bool) if fin_b.all() else ~fin_b.reshape(-1, 4, bv.shape[1]).all(axis=(1, 2))
    return av, ae, bv, be, a_bad, b_bad, n_pass, pass_len, 2 * fmt.emin


def _accumulate(a, b, acc, rule: StepRule, fmt: Format, acc_fmt: Format) -> np.ndarray:
    """acc + a @ b under one rule.

    a (M, K), b (K, N): input arrays (dtype of ``fmt``); acc (M, N) float32 or float64
    holding accumulator values (exactly), updated in place when the path computes in
    its dtype.  Returns the result array (float32 or float64).
    """
    sp = step_params(rule, acc_fmt)
    if rule.frac_bits is None:
        a, b = _narrow(a, fmt, rule), _narrow(b, fmt, rule)
        a32, b32 = a.astype(np.float32), b.astype(np.float32)  # exact widening
        # binary32 arithmetic is the exact FMA when every product is exact in binary32
        exact = _products_exact_in_fp32(fmt)
        if not exact and np.isfinite(a32).all() and np.isfinite(b32).all():
            nz_a, nz_b = np.abs(a32[a32 != 0]).astype(np.float64), np.abs(b32[b32 != 0]).astype(np.float64)
            exact = nz_a.size == 0 or nz_b.size == 0 or (
                nz_a.min() * nz_b.min() >= 2.0 ** -126 and nz_a.max() * nz_b.max() < 2.0 ** 127)
        if acc_fmt.name == "fp32" and exact and sp.o_rne and sp.o_man == 23:
            acc32 = np.ascontiguousarray(acc, np.float32)
            K.fma_gemm_f32(np.ascontiguousarray(a32), np.ascontiguousarray(b32), acc32)
            return acc32
        acc = np.ascontiguousarray(acc, np.float64)
        K.fma_gemm(np.ascontiguousarray(a32, np.float64), np.ascontiguousarray(b32, np.float64), acc,
                   sp.o_man, sp.o_emin, sp.o_max, sp.o_rne, sp.o_ovf)
        return acc
    acc = np.ascontiguousarray(acc, np.float64)
    # binary32 holds every product and every scaled product exactly: twice the lanes
    vdt = np.float32 if _fused_in_fp32(fmt, rule) else np.float64
    av, ae = operand_arrays(a, fmt, rule, vdt)
    bv, be = operand_arrays(b, fmt, rule, vdt)
    av, ae, bv, be, a_bad, b_bad, n_pass, pass_len, p_floor = fused_layout(av, ae, bv, be, fmt, rule)
    K.fused_gemm(av, ae, bv, be, a_bad, b_bad, acc, n_pass, pass_len, p_floor, *sp.fused_args()[1:],
                 numba.get_num_threads())
    return acc


def check_gemm_args(prof: DatapathProfile, a, b, c, input_format):
    """Validate a GEMM's operands against a profile (shared by every path).

    Returns ``(input Format, StepRule, accumulator Format, c, (M, K, N))`` with ``c``
    a float32 zero matrix when None.  TypeError/ValueError name the bad argument.
    """
    _check_array("a", a, 2)
    _check_array("b", b, 2)
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have the same dtype, not {a.dtype} and {b.dtype}")
    fmt = input_format_of(a.dtype, input_format)
    rule = prof.rule(fmt.name)
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
    return fmt, rule, acc_fmt, c, (M, Kd, N)


def matmul(a, b, c=None, *, profile="hopper", input_format=None, split_k=1):
    """D = A @ B + C, bit for bit as the profile's matrix unit computes it.

    The GEMM walks K in steps of the profile's ``k`` products (zero-padding the last),
    feeding each step's D into the next as its C, as a GEMM main loop chains
    ``mma`` instructions.

    Args:
        a: (M, K) array of float16, bfloat16, float8_e4m3fn, float8_e5m2, or
            float32 with ``input_format="tf32"``.
        b: (K, N) array of the same dtype.
        c: (M, N) float32 or float16 accumulator, or None (+0, float32).
            Its dtype picks the accumulator format.
        profile: a name in :data:`simulator.PROFILES` or a :class:`DatapathProfile`.
        input_format: the input format's name; needed only for float32 (``"tf32"``).
        split_k: S >= 1 dividing K: K is cut into S equal contiguous chunks, each
            accumulated from zero, the partial results summed in order
            (((p0 + p1) + p2) + ...) with binary32 round-to-nearest-even and C added
            last the same way (then rounded to nearest even into float16 for a
            float16 accumulator).
    Returns:
        D, (M, N), with c's dtype (float32 when c is None).  NaN results carry the
        profile's NaN bits.
    """
    prof = get_profile(profile)
    fmt, rule, acc_fmt, c, (M, Kd, N) = check_gemm_args(prof, a, b, c, input_format)
    if not isinstance(split_k, (int, np.integer)) or isinstance(split_k, bool):
        raise TypeError(f"split_k must be an int, not {type(split_k).__name__}")
    if split_k < 1 or (Kd % split_k != 0 if Kd else split_k != 1):
        raise ValueError(f"split_k must be a positive divisor of K={Kd}, not {split_k}")

    # a float32 C is its own exact working copy; a float16 one is widened (exactly)
    c_vals = c.astype(np.float32 if c.dtype == np.float32 else np.float64)
    chunk = Kd // split_k if Kd else 0
    if split_k == 1:
        acc = _accumulate(a, b, c_vals, rule, fmt, acc_fmt)
    else:
        f32 = np.float32
        total = None
        for s in range(split_k):
            sl = slice(s * chunk, (s + 1) * chunk)
            part = _accumulate(a[:, sl], b[sl], np.zeros((M, N)), rule, fmt, acc_fmt)
            with np.errstate(over="ignore", invalid="ignore"):
                total = part.astype(f32) if total is None else total + part.astype(f32)
        with np.errstate(over="ignore", invalid="ignore"):
            acc = total + c_vals.astype(f32)
    with np.errstate(over="ignore"):
        out = acc.astype(c.dtype)
    nan = np.isnan(acc)
    if nan.any():
        bits = out.view(acc_fmt.uint_dtype)
        bits[nan] = prof.nan_fp32 if acc_fmt.name == "fp32" else prof.nan_fp16
    return out
