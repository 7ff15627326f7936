"""Number formats as frozen data, with bit-level encode and decode.

A :class:`Format` says how many exponent and mantissa bits a binary floating-point
format has, its bias, what the all-ones exponent means and whether it has subnormals.
Everything else (largest finite value, smallest normal, NaN pattern) is derived from
those fields, so a new format is one catalogue entry.

Encode and decode are vectorised numpy over raw bit patterns held in unsigned
integers (``uint8``/``uint16``/``uint32``).  Values travel as binary64, which holds
every value of every catalogue format exactly.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import ml_dtypes
import numpy as np

from . import _kernels as _K

__all__ = ["Format", "FORMATS", "get_format", "ROUNDING_MODES"]

# ml_dtypes' floating types (numpy kind 'V'): bfloat16, the FP8, FP6 and FP4 types
_ML_FLOATS = frozenset(np.dtype(getattr(ml_dtypes, n)) for n in (
    "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float4_e2m1fn",
    "float6_e2m3fn", "float6_e3m2fn", "float8_e8m0fnu") if hasattr(ml_dtypes, n))

#: Rounding modes understood by :meth:`Format.encode`.
ROUNDING_MODES = ("rne", "rz")

# which encodings are special: ieee: the all-ones exponent holds inf (mantissa 0) and NaNs;
# fn: only the all-ones exponent with the all-ones mantissa is NaN, no inf; fnuz: the
# negative-zero encoding is the only NaN, no inf, no -0; none: every encoding is finite
_SPECIALS = ("ieee", "fn", "fnuz", "none")


@dataclass(frozen=True)
class Format:
    """A binary floating-point format.

    Attributes:
        name: catalogue name (``"fp16"``, ``"e4m3"``, ...).
        exp_bits: width of the exponent field in bits.
        man_bits: width of the stored mantissa (fraction) field in bits.
        bias: exponent bias.
        specials: ``"ieee"`` (all-ones exponent holds inf and NaNs), ``"fn"``
            (finite-only "fn" variant: the all-ones exponent holds normal numbers
            except the all-ones mantissa, which is the single NaN; no infinity),
            ``"fnuz"`` (AMD CDNA3 FP8: the negative-zero encoding is the single NaN;
            no infinity, no -0; the all-ones exponent holds normal numbers) or
            ``"none"`` (OCP FP4/FP6: every encoding is a finite number).
        subnormals: whether the zero exponent field holds subnormal numbers
            (False: they are flushed to signed zero on encode and decode).
        signed: whether the encoding has a sign bit (False: E8M0 scales, width
            = exp_bits + man_bits).
        sign_ignored: the container has a sign bit that decode drops (UE4M3 scales:
            the value is the magnitude); encode writes it as 0.
        has_zero: False: the zero exponent field is an ordinary binade (E8M0:
            2**-127), so there is no zero and no subnormal; ``emin = -bias``.
        container_bits: bits of the unsigned integer that holds one value
            (TF32 lives in the top 19 bits of a 32-bit container).
        container_shift: how far the encoding sits above bit 0 of its container.
        numpy_name: the numpy / ml_dtypes dtype name arrays of this format use
            (``"float16"``, ``"bfloat16"``, ``"float8_e4m3fn"``; TF32 travels in
            ``"float32"`` arrays); ``""`` for a format no numpy dtype holds.
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    specials: str = "ieee"
    subnormals: bool = True
    container_bits: int = 0
    container_shift: int = 0
    signed: bool = True
    sign_ignored: bool = False
    has_zero: bool = True
    numpy_name: str = field(default="", compare=False)  # names the container, not the encoding

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, not {self.name!r}")
        for attr, lo, hi in (("exp_bits", 2, 11), ("man_bits", 0, 52)):
            v = getattr(self, attr)
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{attr} must be an int in [{lo}, {hi}], not {v!r}")
        if not isinstance(self.bias, int) or not 0 < self.bias < (1 << self.exp_bits):
            raise ValueError(f"bias must be an int in [1, {(1 << self.exp_bits) - 1}], not {self.bias!r}")
        for attr in ("subnormals", "signed", "sign_ignored", "has_zero"):
            if not isinstance(getattr(self, attr), bool):
                raise TypeError(f"{attr} must be a bool, not {getattr(self, attr)!r}")
        for attr in ("container_bits", "container_shift"):
            v = getattr(self, attr)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{attr} must be an int, not {v!r}")
            if v < 0:
                raise ValueError(f"{attr} must be non-negative, not {v!r}")
        if self.specials not in _SPECIALS:
            raise ValueError(f"specials must be one of {_SPECIALS}, not {self.specials!r}")
        if self.man_bits == 0 and (self.has_zero or self.specials not in ("fn", "none")):
            # with no mantissa bits only E8M0's shape is meaningful: every code a power of two
            raise ValueError(f"man_bits must be at least 1 unless has_zero=False and specials is 'fn' or "
                             f"'none', not 0 with has_zero={self.has_zero} and specials={self.specials!r}")
        if self.sign_ignored and not self.signed:
            raise ValueError("sign_ignored must be False for a format without a sign bit, not True")
        if self.specials == "fnuz" and not (self.signed and not self.sign_ignored):
            raise ValueError("specials 'fnuz' needs a sign bit (its NaN is the negative-zero code), "
                             f"not signed={self.signed}, sign_ignored={self.sign_ignored}")
        if not isinstance(self.numpy_name, str):
            raise TypeError(f"numpy_name must be a str, not {type(self.numpy_name).__name__}")
        width = int(self.signed) + self.exp_bits + self.man_bits
        container = self.container_bits or max(8, 1 << (width - 1).bit_length())
        if container not in (8, 16, 32, 64) or width + self.container_shift > container:
            raise ValueError(
                f"container_bits must be 8, 16, 32 or 64 and hold {width} + {self.container_shift} bits, "
                f"not {self.container_bits!r}")
        object.__setattr__(self, "container_bits", container)

    # ---- derived properties -------------------------------------------------
    @property
    def width(self) -> int:
        """Bits in one encoding (sign, if any, + exponent + mantissa)."""
        return int(self.signed) + self.exp_bits + self.man_bits

    @property
    def emin(self) -> int:
        """Unbiased exponent of the smallest normal number (of the smallest value when
        ``has_zero`` is False)."""
        return 1 - self.bias if self.has_zero else -self.bias

    @property
    def emax(self) -> int:
        """Unbiased exponent of the largest finite number."""
        top = (1 << self.exp_bits) - 1
        # the top binade is all specials for ieee, and for fn without mantissa bits (E8M0)
        return top - self.bias - (1 if self.specials == "ieee" or (self.specials == "fn" and self.man_bits == 0)
                                  else 0)

    @property
    def max_finite(self) -> float:
        """Largest finite value (binary64, exact)."""
        man_max = (1 << self.man_bits) - 1
        if self.specials == "fn" and self.man_bits:
            man_max -= 1  # all-ones mantissa at the top exponent is NaN
        return float((1 << self.man_bits) + man_max) * 2.0 ** (self.emax - self.man_bits)

    @property
    def smallest_normal(self) -> float:
        return 2.0 ** self.emin

    @property
    def smallest_subnormal(self) -> float:
        """Smallest positive value (the smallest normal when there are no subnormals)."""
        return 2.0 ** (self.emin - (self.man_bits if self.has_zero else 0))

    @property
    def has_inf(self) -> bool:
        return self.specials == "ieee"

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    @property
    def dtype(self) -> np.dtype | None:
        """The numpy dtype arrays of this format use (ml_dtypes' for bfloat16 and FP8),
        or None when no numpy dtype holds it."""
        if not self.numpy_name:
            return None
        return np.dtype(getattr(ml_dtypes, self.numpy_name, None) or self.numpy_name)

    @property
    def uint_dtype(self) -> np.dtype:
        """Unsigned numpy dtype of the container."""
        return np.dtype(f"uint{self.container_bits}")

    @property
    def nan_bits(self) -> int:
        """A quiet NaN encoding (positive sign; fnuz: its only NaN, the negative-zero
        code), in container position; ValueError for formats without NaN."""
        if not self.has_nan:
            raise ValueError(f"format {self.name} has no NaN")
        e_all = ((1 << self.exp_bits) - 1) << self.man_bits
        if self.specials == "fnuz":
            code = 1 << (self.width - 1)
        elif self.specials == "fn":
            code = e_all | ((1 << self.man_bits) - 1)
        else:
            code = e_all | (1 << (self.man_bits - 1))
        return code << self.container_shift

    @property
    def inf_bits(self) -> int:
        """Encoding of +inf in container position; ValueError for formats without inf."""
        if not self.has_inf:
            raise ValueError(f"format {self.name} has no infinity")
        return (((1 << self.exp_bits) - 1) << self.man_bits) << self.container_shift

    @property
    def max_bits(self) -> int:
        """Encoding of the largest finite value, in container position."""
        return int(self._max_code()) << self.container_shift

    # ---- decode --------------------------------------------------------------
    def fields(self, bits):
        """Split bit patterns into (sign, biased exponent, mantissa) int64 arrays.

        The sign is 0 for formats without a sign bit and for ``sign_ignored`` ones."""
        u = np.asarray(bits).astype(np.uint64) >> np.uint64(self.container_shift)
        man = (u & np.uint64((1 << self.man_bits) - 1)).astype(np.int64)
        exp = ((u >> np.uint64(self.man_bits)) & np.uint64((1 << self.exp_bits) - 1)).astype(np.int64)
        sign = ((u >> np.uint64(self.exp_bits + self.man_bits)) & np.uint64(1)).astype(np.int64)
        if not self.signed or self.sign_ignored:
            sign = np.zeros_like(sign)
        return sign, exp, man

    def special_masks(self, bits):
        """(nan, inf) bool arrays of bit patterns (inf only for ``"ieee"`` formats)."""
        u = np.asarray(bits).astype(np.uint64) >> np.uint64(self.container_shift)
        u = u & np.uint64((1 << self.width) - 1)
        e_all = np.uint64(((1 << self.exp_bits) - 1) << self.man_bits)
        man_all = np.uint64((1 << self.man_bits) - 1)
        mag = u & np.uint64((1 << (self.exp_bits + self.man_bits)) - 1)
        if self.specials == "ieee":
            return ((mag & e_all) == e_all) & ((mag & man_all) != 0), mag == e_all
        no = np.zeros(u.shape, bool)
        if self.specials == "fn":
            return mag == (e_all | man_all), no
        if self.specials == "fnuz":
            return u == np.uint64(1 << (self.width - 1)), no
        return no, no

    def decode(self, bits) -> np.ndarray:
        """Bit patterns (unsigned ints, any shape) -> binary64 values (exact).

        Bits outside the format's encoding inside the container (e.g. the low 13
        bits of a TF32 container) are ignored.
        """
        bits = self._check_bits(bits)
        sign, exp, man = self.fields(bits)
        sub = (exp == 0) & self.has_zero
        sig = np.where(sub, man, man | (1 << self.man_bits)).astype(np.float64)
        e = np.where(sub, self.emin, exp - self.bias) - self.man_bits
        with np.errstate(over="ignore"):
            val = np.ldexp(sig, e.astype(np.int32))
        if not self.subnormals:
            val = np.where(exp == 0, 0.0, val)
        nan, inf = self.special_masks(bits)
        val = np.where(inf, np.inf, val)
        val = np.where(sign == 1, -val, val)
        return np.where(nan, np.nan, val)

    def _check_bits(self, bits):
        bits = np.asarray(bits)
        if bits.dtype.kind not in "ui":
            raise TypeError(f"bits must be an integer array, not {bits.dtype}")
        return bits

    # ---- encode --------------------------------------------------------------
    def encode(self, x, rounding: str = "rne", saturate: bool = False) -> np.ndarray:
        """binary64/binary32 values -> bit patterns in :attr:`uint_dtype`.

        Args:
            x: array-like of floats (any shape, numpy's or ml_dtypes' float types);
                every one is widened exactly.
            rounding: ``"rne"`` (round to nearest, ties to even) or ``"rz"``
                (toward zero).
            saturate: clamp out-of-range values (infinities included) to the
                largest finite value instead of producing inf (or NaN in
                formats without inf). RZ never rounds a finite value to inf.

        NaN maps to :attr:`nan_bits` with the input's sign.  Formats without inf or NaN
        (``specials="none"``) saturate (as OCP's FP4/FP6 conversions do) and refuse NaN
        with ValueError; ``"fnuz"`` formats have no -0 (a zero result is +0); formats
        without a sign give NaN for negative values, and without zero (E8M0) for zero;
        a positive value below E8M0's smallest rounds to it.
        """
        if rounding not in ROUNDING_MODES:
            raise ValueError(f"rounding must be one of {ROUNDING_MODES}, not {rounding!r}")
        x = np.asarray(x)
        if x.dtype.kind != "f" and x.dtype not in _ML_FLOATS:
            raise TypeError(f"x must be a floating-point array, not {x.dtype}")
        if x.dtype not in (np.float64, np.float32):
            x = x.astype(np.float64)  # exact: every float dtype (ml_dtypes' too) widens to binary64
        if not self.has_nan and np.isnan(x).any():
            raise ValueError(f"x must not hold NaN: format {self.name} has no NaN")
        # IEEE: round-toward-zero never overflows to infinity, it stops at the largest finite
        over_to_max = saturate or rounding == "rz"
        over_code = self._max_code() if over_to_max else self._overflow_code()
        inf_code = self._max_code() if saturate else self._overflow_code()
        out = np.empty(x.shape, self.uint_dtype)
        self._encode_into(np.ascontiguousarray(x).reshape(-1), out.reshape(-1), over_code, inf_code,
                          self.container_shift, rounding == "rne")
        return out

    def _encode_into(self, x, out, over_code, inf_code, shift, rne):
        """:func:`simulator._kernels.encode_values` with this format's fields."""
        _K.encode_values(x, out, np.int64(self.man_bits), np.int64(self.emin), np.int64(self.bias),
                         self.subnormals, self.has_zero, float(self.smallest_normal), float(self.max_finite),
                         np.uint64(over_code), np.uint64(inf_code),
                         np.uint64(self.nan_bits >> self.container_shift) if self.has_nan else np.uint64(0),
                         self.has_nan and (not self.signed or self.sign_ignored), self.has_nan and not self.has_zero,
                         np.int64(self.width - 1 if self.signed and not self.sign_ignored else -1),
                         self.specials == "fnuz", np.int64(shift), rne)

    def _max_code(self) -> np.uint64:
        out = np.zeros(1, np.uint64)  # the magnitude code of the largest finite value (no sign, no shift)
        self._encode_into(np.array([self.max_finite]), out, 0, 0, 0, True)
        return out[0]

    def _nan_code(self) -> np.uint64:
        return np.uint64(self.nan_bits >> self.container_shift)

    def _overflow_code(self) -> np.uint64:
        if self.has_inf:
            return np.uint64(self.inf_bits >> self.container_shift)
        return self._nan_code() if self.has_nan else self._max_code()

    def round(self, x, rounding: str = "rne", saturate: bool = False) -> np.ndarray:
        """Round values to this format and return them as binary64 (exact)."""
        return self.decode(self.encode(x, rounding, saturate))

    def all_bit_patterns(self) -> np.ndarray:
        """Every encoding of a format of at most 16 bits, in container position."""
        if self.width > 16:
            raise ValueError(f"all_bit_patterns is for formats of at most 16 bits, not {self.width}")
        codes = np.arange(1 << self.width, dtype=np.uint64)
        return (codes << np.uint64(self.container_shift)).astype(self.uint_dtype)


FORMATS: Mapping[str, Format] = MappingProxyType({
    f.name: f
    for f in (
        Format("fp32", exp_bits=8, man_bits=23, bias=127, numpy_name="float32"),
        Format("tf32", exp_bits=8, man_bits=10, bias=127, container_bits=32, container_shift=13,
               numpy_name="float32"),
        Format("fp16", exp_bits=5, man_bits=10, bias=15, numpy_name="float16"),
        Format("bf16", exp_bits=8, man_bits=7, bias=127, numpy_name="bfloat16"),
        Format("e4m3", exp_bits=4, man_bits=3, bias=7, specials="fn", numpy_name="float8_e4m3fn"),
        Format("e5m2", exp_bits=5, man_bits=2, bias=15, numpy_name="float8_e5m2"),
        # AMD CDNA3 FP8 ("fp8" / "bf8"): 0x80 is the only NaN, no inf, no -0
        Format("e4m3fnuz", exp_bits=4, man_bits=3, bias=8, specials="fnuz", numpy_name="float8_e4m3fnuz"),
        Format("e5m2fnuz", exp_bits=5, man_bits=2, bias=16, specials="fnuz", numpy_name="float8_e5m2fnuz"),
        # OCP MX FP4 and FP6 (one code per uint8, in the low bits): no inf, no NaN
        Format("e2m1", exp_bits=2, man_bits=1, bias=1, specials="none", numpy_name="float4_e2m1fn"),
        Format("e2m3", exp_bits=2, man_bits=3, bias=1, specials="none", numpy_name="float6_e2m3fn"),
        Format("e3m2", exp_bits=3, man_bits=2, bias=3, specials="none", numpy_name="float6_e3m2fn"),
        # block scales: OCP E8M0 (2**(E - 127), 0xFF NaN, no zero) and NVFP4's UE4M3 (E4M3
        # whose sign bit is ignored); neither has a numpy dtype of its own that means the same
        Format("ue8m0", exp_bits=8, man_bits=0, bias=127, specials="fn", signed=False, has_zero=False,
               numpy_name="float8_e8m0fnu"),
        Format("ue4m3", exp_bits=4, man_bits=3, bias=7, specials="fn", sign_ignored=True),
    )
})

_ALIASES = {"float32": "fp32", "binary32": "fp32", "float16": "fp16", "half": "fp16", "binary16": "fp16",
            "bfloat16": "bf16", "float8_e4m3fn": "e4m3", "e4m3fn": "e4m3", "float8_e5m2": "e5m2",
            "float8_e4m3fnuz": "e4m3fnuz", "float8_e5m2fnuz": "e5m2fnuz", "float4_e2m1fn": "e2m1",
            "float6_e2m3fn": "e2m3", "float6_e3m2fn": "e3m2", "float8_e8m0fnu": "ue8m0", "e8m0": "ue8m0",
            "f32": "fp32", "f16": "fp16"}


def get_format(name) -> Format:
    """Look a format up by catalogue name or common alias (``"float16"``, ``"bfloat16"``...)."""
    if isinstance(name, Format):
        return name
    if not isinstance(name, str):
        raise TypeError(f"format must be a str or Format, not {type(name).__name__}")
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, not {name!r}")
    return FORMATS[key]
