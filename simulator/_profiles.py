"""Datapath profiles: how a matrix unit turns A, B and C into D, as frozen data.

A profile maps each input format to a :class:`StepRule`: one fused dot-product step
of ``k`` products (plus C, when ``c_mode == "fused"``).  Kernels never branch on a
profile's name; they read these integers.  Adding an accelerator is adding an entry
to :data:`PROFILES`.

The step of every tensor-core rule here (``frac_bits`` not None) is:

1. every product exact; its *alignment exponent* is the sum of its inputs'
   exponents (significand in [0, 4); a subnormal input counts with its format's
   minimum normal exponent); zero products take no part;
2. C (when fused and nonzero) takes part with its own exponent;
3. every term is aligned to the largest exponent E and truncated toward zero
   (sign-magnitude) to ``frac_bits`` fractional bits below 2**E;
4. the aligned terms are summed exactly;
5. the sum is rounded to the accumulator format (``rounding`` into binary32 with
   ``result_man_bits`` mantissa bits, round-to-nearest-even into binary16).

``frac_bits=None`` means an IEEE fused step: the exact sum rounded once
(``systolic_fma``: a scalar binary32 fused multiply-add).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ._formats import FORMATS

__all__ = ["StepRule", "DatapathProfile", "PROFILES", "get_profile", "C_MODES"]

#: How C enters a step: fused with the products, or added after the products'
#: sum was rounded to binary32 (one binary32 round-to-nearest-even addition).
C_MODES = ("fused", "after")
_ROUNDINGS = ("rz", "rne")


@dataclass(frozen=True)
class StepRule:
    """One fused step of a matrix unit for one input format.

    Attributes:
        k: products fused per step (the instruction's K, or a fraction of it).
        frac_bits: fractional bits kept below the largest exponent after alignment;
            ``None`` for an exact (IEEE fused) sum.
        c_mode: ``"fused"`` or ``"after"`` (see :data:`C_MODES`).
        rounding: rounding of the step result into a binary32 accumulator
            (``"rz"`` or ``"rne"``); binary16 accumulators always round to nearest even.
        result_man_bits: mantissa bits the binary32 result keeps (23, or fewer for
            datapaths that truncate their result further).
        operand_rounding: how binary32 operands are narrowed to the input format
            (only for ``tf32``: ``"rz"`` keeps the top 19 bits).
        passes: the pass of each K position within a step, as a pattern repeated
            along the step: position ``k`` belongs to pass ``passes[k % len(passes)]``.
            Passes run in order 0, 1, ...; each fuses its products with the previous
            pass's result (C for pass 0 when ``c_mode == "fused"``) as one more term,
            and every pass but the last rounds into binary32 by ``rounding`` and
            ``result_man_bits``.  ``(0,)``: one pass of all k products.  Hopper FP8
            ``mma.sync`` is ``(0, 0, 1, 1)``: the products at k % 4 in {0, 1}, then
            those at k % 4 in {2, 3} with the first pass's result.
        overflow: a finite result beyond the accumulator's range becomes ``"inf"``
            (what the H100 does, even when it rounds toward zero) or
            ``"ieee"`` (inf under RNE, the largest finite value under RZ).
    """

    k: int
    frac_bits: int | None = 25
    c_mode: str = "fused"
    rounding: str = "rz"
    result_man_bits: int = 23
    operand_rounding: str = "rz"
    passes: tuple = (0,)
    overflow: str = "inf"

    def __post_init__(self):
        if not isinstance(self.k, int) or isinstance(self.k, bool) or not 1 <= self.k <= 256:
            raise ValueError(f"k must be an int in [1, 256], not {self.k!r}")
        if self.frac_bits is not None and (not isinstance(self.frac_bits, int) or isinstance(self.frac_bits, bool)
                                           or not 1 <= self.frac_bits <= 26):
            # 26: k * 2**(3 + frac_bits) must stay below 2**53 so a binary64 sum is exact
            raise ValueError(f"frac_bits must be None or an int in [1, 26], not {self.frac_bits!r}")
        if self.frac_bits is None and self.k != 1:
            raise ValueError(f"an exact (frac_bits=None) step must have k=1, not k={self.k}")
        if self.c_mode not in C_MODES:
            raise ValueError(f"c_mode must be one of {C_MODES}, not {self.c_mode!r}")
        if self.rounding not in _ROUNDINGS or self.operand_rounding not in _ROUNDINGS:
            raise ValueError(f"rounding and operand_rounding must be one of {_ROUNDINGS}, "
                             f"not {self.rounding!r}/{self.operand_rounding!r}")
        p = self.passes
        if (not isinstance(p, tuple) or not p or any(not isinstance(x, int) or isinstance(x, bool) for x in p)
                or sorted(set(p)) != list(range(max(p) + 1)) or self.k % len(p) != 0):
            raise ValueError(f"passes must be a non-empty tuple of ints using each of 0..P-1, whose length "
                             f"divides k={self.k}, not {p!r}")
        if len(set(p)) > 1 and self.frac_bits is None:
            raise ValueError("an exact (frac_bits=None) step has one pass, not several")
        if self.overflow not in ("inf", "ieee"):
            raise ValueError(f"overflow must be 'inf' or 'ieee', not {self.overflow!r}")
        if (not isinstance(self.result_man_bits, int) or isinstance(self.result_man_bits, bool)
                or not 1 <= self.result_man_bits <= 23):
            raise ValueError(f"result_man_bits must be an int in [1, 23], not {self.result_man_bits!r}")


@dataclass(frozen=True)
class DatapathProfile:
    """A matrix unit's arithmetic, per input format.

    Attributes:
        name: catalogue name.
        description: one line: what hardware and which source.
        rules: input format name -> :class:`StepRule` (read-only mapping).
        accumulators: accumulator formats it supports (``"fp32"``, ``"fp16"``).
        nan_fp32, nan_fp16: the bits of a NaN result.
    """

    name: str
    description: str
    rules: MappingProxyType
    accumulators: tuple = ("fp32", "fp16")
    nan_fp32: int = 0x7FFFFFFF
    nan_fp16: int = 0x7FFF

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise (TypeError if not isinstance(self.name, str) else ValueError)(
                f"name must be a non-empty str, not {self.name!r}")
        if not isinstance(self.description, str):
            raise TypeError(f"description must be a str, not {type(self.description).__name__}")
        if not hasattr(self.rules, "items"):
            raise TypeError(f"rules must be a mapping of format name -> StepRule, not {type(self.rules).__name__}")
        rules = dict(self.rules)
        if not rules:
            raise ValueError("rules must name at least one input format, not none")
        for fmt, rule in rules.items():
            if fmt not in FORMATS:
                raise ValueError(f"rules keys must be formats in {sorted(FORMATS)}, not {fmt!r}")
            if not isinstance(rule, StepRule):
                raise TypeError(f"rules[{fmt!r}] must be a StepRule, not {type(rule).__name__}")
        if not isinstance(self.accumulators, tuple) or not self.accumulators:
            raise ValueError(f"accumulators must be a non-empty tuple of 'fp32'/'fp16', not {self.accumulators!r}")
        for acc in self.accumulators:
            if acc not in ("fp32", "fp16"):
                raise ValueError(f"accumulators must be 'fp32' or 'fp16', not {acc!r}")
        for attr, fmt in (("nan_fp32", "fp32"), ("nan_fp16", "fp16")):
            v = getattr(self, attr)
            f = FORMATS[fmt]
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << f.width) \
                    or not np.isnan(f.decode(np.array([v], f.uint_dtype))[0]):
                raise ValueError(f"{attr} must be the bits of a {fmt} NaN, not {v!r}")
        object.__setattr__(self, "rules", MappingProxyType(rules))

    def rule(self, input_format: str) -> StepRule:
        """The step rule for an input format name; ValueError if unsupported."""
        if input_format not in self.rules:
            raise ValueError(f"profile {self.name!r} supports input formats {sorted(self.rules)}, "
                             f"not {input_format!r}")
        return self.rules[input_format]

    def __hash__(self):
        return hash((self.name, tuple(sorted(self.rules.items()))))


def _uniform(k16, **kw):
    """Rules for the 16-bit formats plus tf32 at half the K (tf32 instructions are k8)."""
    return {"fp16": StepRule(k16, **kw), "bf16": StepRule(k16, **kw), "tf32": StepRule(max(1, k16 // 2), **kw)}


# reverse-engineered from the H100/H200 captures (100 % of 688,128 elements): two passes
# of 16 products split by k % 4, each fused by the 16-bit rule and truncated to
# binary32, then C added by one binary32 round-to-nearest-even addition
_HOPPER_FP8 = StepRule(32, frac_bits=25, c_mode="after", passes=(0, 0, 1, 1))

PROFILES: Mapping[str, DatapathProfile] = MappingProxyType({
    p.name: p
    for p in (
        DatapathProfile(
            "hopper",
            "NVIDIA H100/H200 warp-level mma.sync (sm_90); matches the captured H100 vectors",
            {**_uniform(16), "e4m3": _HOPPER_FP8, "e5m2": _HOPPER_FP8},
        ),
        DatapathProfile(
            "hopper_wgmma",
            "NVIDIA Hopper warpgroup wgmma: as hopper for 16-bit inputs; FP8 keeps 13 fractional "
            "bits and truncates its binary32 result to 13 mantissa bits (MMA-Sim's model)",
            {**_uniform(16), "e4m3": StepRule(32, frac_bits=13, result_man_bits=13),
             "e5m2": StepRule(32, frac_bits=13, result_man_bits=13)},
        ),
        DatapathProfile(
            "ampere",
            "NVIDIA A100 (sm_80) mma: a k16 instruction is two chained steps of 8 products + C "
            "(tf32: 4), 24 fractional bits, RZ (MMA-Sim; Khattak & Mikaitis)",
            {"fp16": StepRule(8, frac_bits=24), "bf16": StepRule(8, frac_bits=24),
             "tf32": StepRule(4, frac_bits=24)},
        ),
        DatapathProfile(
            "turing",
            "NVIDIA T4 (sm_75) mma: 8 products + C fused per step, 24 fractional bits, RZ (MMA-Sim)",
            {"fp16": StepRule(8, frac_bits=24)},
        ),
        DatapathProfile(
            "volta",
            "NVIDIA V100 (sm_70) mma: 4 products + C fused per step, 23 fractional bits, RZ "
            "(MMA-Sim; Fasi et al. 2021)",
            {"fp16": StepRule(4, frac_bits=23)},
        ),
        DatapathProfile(
            "systolic_fma",
            "scalar PE: IEEE binary32 fused multiply-add, round to nearest even, K in order",
            {f: StepRule(1, frac_bits=None, rounding="rne", operand_rounding="rne")
             for f in ("fp16", "bf16", "tf32", "e4m3", "e5m2")},
            accumulators=("fp32",),
            nan_fp32=0x7FC00000,
        ),
    )
})


def get_profile(profile) -> DatapathProfile:
    """Look a profile up by name (or pass a :class:`DatapathProfile` through)."""
    if isinstance(profile, DatapathProfile):
        return profile
    if not isinstance(profile, str):
        raise TypeError(f"profile must be a str or DatapathProfile, not {type(profile).__name__}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, not {profile!r}")
    return PROFILES[profile]
