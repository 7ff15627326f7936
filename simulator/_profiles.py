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

Issue 13 grew the vocabulary (every field has a default that keeps the rule above):
a pairwise binary32 adder tree (``tree``), how a zero operand counts in the choice
of E (``zero_exp``), C re-aligned after the products (``c_mode="aligned"`` with
``sum_frac_bits``, ``c_frac_bits``, ``align_rounding``, ``c_drop``), passes summed
side by side (``pass_merge="parallel"``, ``merge_rounding``), products that overflow
binary32 (``product_overflow``), subnormal flushing (``flush``), block-scaled groups
summed exactly (``group_k``) and the sign of a result that rounds to zero
(``zero_result``).  :attr:`StepRule.is_classic` says whether a rule uses only the
original vocabulary.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ._formats import FORMATS

__all__ = ["StepRule", "DatapathProfile", "PROFILES", "get_profile", "C_MODES", "FLUSH_POINTS", "TREES"]

#: How C enters a step: fused with the products, added after the products' sum was
#: rounded to binary32 (one binary32 round-to-nearest-even addition), or re-aligned
#: with the products' fixed-point sum to their common exponent (``"aligned"``).
C_MODES = ("fused", "after", "aligned")
#: How a step sums its products: one alignment to the largest exponent (``"fused"``)
#: or a balanced binary tree of binary32 round-to-nearest-even additions (``"pairwise"``).
TREES = ("fused", "pairwise")
#: Where subnormals can be flushed to zero (see :attr:`StepRule.flush`).
FLUSH_POINTS = ("inputs", "nodes", "accumulator")
_ROUNDINGS = ("rz", "rne")
_ALIGN_ROUNDINGS = ("rd", "rz")
#: the largest frac_bits: k * 2**(frac_bits + 2) and FP4 group terms (< 2**(frac_bits + 12))
#: must stay below 2**53 (binary64 holds every aligned term and sum exactly)
_MAX_FRAC_BITS = 35


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


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
        tree: ``"fused"`` (the steps above) or ``"pairwise"`` (AMD CDNA1/2 f16/bf16):
            every product rounded to binary32 (as ``fmaf(a, b, +0)``: an exact -0
            product is +0), then a balanced binary tree (halves ``[0, n//2)``,
            ``[n//2, n)``, recursively; k a power of two) of binary32 RNE additions;
            C is added after (``c_mode="after"``), the result rounded to nearest even.
        zero_exp: None: zero products and a zero C take no part in choosing E (the
            H100's rule).  An int: a zero operand counts with this exponent, so a zero
            product's exponent is ``zero_exp`` + the other operand's (+ its scales') and a
            zero C counts with ``zero_exp`` (MMA-Sim: -126).
        sum_frac_bits, c_frac_bits, align_rounding, c_drop: ``c_mode="aligned"``
            (AMD CDNA3): the products' sum S (aligned to its own largest exponent Ep,
            ``frac_bits`` bits) and C are re-aligned to E = max(Ep, exponent of C): S
            kept to ``sum_frac_bits`` bits below 2**E, C to ``c_frac_bits``, both by
            ``align_rounding`` (``"rd"``: floor of the two's-complement value, ``"rz"``:
            toward zero); C is dropped when its exponent is below E - ``c_drop``; the
            two are added exactly and the sum rounded by ``rounding``.
        pass_merge, merge_rounding: ``"chain"`` (above) or ``"parallel"`` (CDNA3 FP8):
            each pass is aligned to its own largest exponent and truncated to
            ``frac_bits``; the pass sums are re-aligned to the largest of those at
            ``frac_bits`` by ``merge_rounding`` and added exactly.
        product_overflow: ``"inf"`` (CDNA3): any product of magnitude >= 2**128 makes the
            step +-inf (NaN if both signs occur), whatever the other terms; ``"none"``.
        flush: a frozenset of points where subnormals become zero: ``"inputs"`` (A, B and
            C below their format's smallest normal become +0), ``"nodes"`` (every
            pairwise-tree leaf and node below 2**-126 becomes a signed zero),
            ``"accumulator"`` (after each step's C addition, likewise).
        group_k: block-scaled FP4: the products of each ``group_k`` consecutive K
            positions are summed exactly; the group sum times the two scales is one
            term whose alignment exponent is the scales' exponents alone.
        zero_result: a nonzero exact sum that rounds to zero gives ``"+0"`` (NVIDIA)
            or the sum's sign (``"signed"``, IEEE; CDNA3).  An exact zero is +0.
    """

    k: int
    frac_bits: int | None = 25
    c_mode: str = "fused"
    rounding: str = "rz"
    result_man_bits: int = 23
    operand_rounding: str = "rz"
    passes: tuple = (0,)
    overflow: str = "inf"
    tree: str = "fused"
    zero_exp: int | None = None
    sum_frac_bits: int = 31
    c_frac_bits: int = 24
    align_rounding: str = "rd"
    c_drop: int | None = None
    pass_merge: str = "chain"
    merge_rounding: str = "rd"
    product_overflow: str = "none"
    flush: frozenset = frozenset()
    group_k: int = 1
    zero_result: str = "+0"

    def __post_init__(self):
        if not isinstance(self.k, int) or isinstance(self.k, bool) or not 1 <= self.k <= 256:
            raise ValueError(f"k must be an int in [1, 256], not {self.k!r}")
        if self.frac_bits is not None and (not _is_int(self.frac_bits) or not 1 <= self.frac_bits <= _MAX_FRAC_BITS):
            raise ValueError(f"frac_bits must be None or an int in [1, {_MAX_FRAC_BITS}], not {self.frac_bits!r}")
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
        self._check_issue13_fields()

    def _check_issue13_fields(self):
        if self.tree not in TREES:
            raise ValueError(f"tree must be one of {TREES}, not {self.tree!r}")
        if self.zero_exp is not None and (not _is_int(self.zero_exp) or not -400 <= self.zero_exp <= 0):
            raise ValueError(f"zero_exp must be None or an int in [-400, 0], not {self.zero_exp!r}")
        for attr in ("sum_frac_bits", "c_frac_bits"):
            v = getattr(self, attr)
            if not _is_int(v) or not 1 <= v <= 40:
                raise ValueError(f"{attr} must be an int in [1, 40], not {v!r}")
        if self.c_drop is not None and (not _is_int(self.c_drop) or self.c_drop < 0):
            raise ValueError(f"c_drop must be None or a non-negative int, not {self.c_drop!r}")
        for attr in ("align_rounding", "merge_rounding"):
            if getattr(self, attr) not in _ALIGN_ROUNDINGS:
                raise ValueError(f"{attr} must be one of {_ALIGN_ROUNDINGS}, not {getattr(self, attr)!r}")
        if self.pass_merge not in ("chain", "parallel"):
            raise ValueError(f"pass_merge must be 'chain' or 'parallel', not {self.pass_merge!r}")
        if self.product_overflow not in ("none", "inf"):
            raise ValueError(f"product_overflow must be 'none' or 'inf', not {self.product_overflow!r}")
        if not isinstance(self.flush, frozenset) or not self.flush <= set(FLUSH_POINTS):
            raise ValueError(f"flush must be a frozenset of {FLUSH_POINTS}, not {self.flush!r}")
        if not _is_int(self.group_k) or self.group_k < 1 or self.k % self.group_k:
            raise ValueError(f"group_k must be a positive int dividing k={self.k}, not {self.group_k!r}")
        if self.zero_result not in ("+0", "signed"):
            raise ValueError(f"zero_result must be '+0' or 'signed', not {self.zero_result!r}")
        n_pass = max(self.passes) + 1
        fused = self.frac_bits is not None
        if self.tree == "pairwise":
            if not fused or self.k & (self.k - 1) or self.c_mode != "after" or n_pass > 1 or self.group_k > 1:
                raise ValueError("a pairwise tree needs frac_bits set (unused), k a power of two, c_mode='after', "
                                 f"one pass and group_k=1, not k={self.k}, c_mode={self.c_mode!r}, "
                                 f"passes={self.passes}, group_k={self.group_k}")
        elif self.flush - {"inputs"}:
            raise ValueError(f"flush points 'nodes' and 'accumulator' belong to tree='pairwise', not {self.tree!r}")
        if not fused and not self.is_classic:
            raise ValueError("an exact (frac_bits=None) step takes only the classic fields "
                             "(tree, zero_exp, c_mode='aligned', passes, product_overflow, group_k at defaults)")
        if n_pass > 1 and self.pass_merge == "chain" and not self.is_classic:
            raise ValueError("chained passes (pass_merge='chain') combine only with the classic fields, "
                             "not with the issue-13 ones")
        if self.pass_merge == "parallel" and self.c_mode != "aligned":
            raise ValueError(f"pass_merge='parallel' needs c_mode='aligned', not {self.c_mode!r}")
        if self.group_k > 1 and (n_pass > 1 or self.c_mode != "fused"):
            raise ValueError("group_k > 1 needs one pass and c_mode='fused'")

    @property
    def is_classic(self) -> bool:
        """Whether the rule uses only the original vocabulary (every issue-13 field at
        its default)."""
        return self.zero_exp is None and self._classic_but_zero_exp

    @property
    def _classic_but_zero_exp(self) -> bool:
        return (self.tree == "fused" and self.c_mode != "aligned" and self.pass_merge == "chain"
                and self.product_overflow == "none" and not self.flush and self.group_k == 1
                and self.zero_result == "+0")

    @property
    def classic_form(self) -> bool:
        """Whether the classic fused kernel (and the classic dot-product unit) runs the
        rule: every issue-13 field at its default except ``zero_exp``, which they take
        as data (a zero operand's alignment exponent in the operand exponent arrays, a
        zero C's in the step record), with ``frac_bits`` set and at most 25 (aligned
        terms below 2**27: the kernel's int32 sums)."""
        return self.frac_bits is not None and self.frac_bits <= 25 and self._classic_but_zero_exp


@dataclass(frozen=True)
class DatapathProfile:
    """A matrix unit's arithmetic, per input format.

    Attributes:
        name: catalogue name.
        description: one line: what hardware and which source.
        rules: input format name -> :class:`StepRule` (read-only mapping).  A key may
            name a variant of an instruction family as ``"FORMAT/VARIANT"`` (CDNA2's
            legacy bf16 instructions are ``"bf16/legacy"``; ``"bf16"`` is the ``_1k``
            kind), chosen by ``matmul(..., variant=...)``.
        accumulators: accumulator formats it supports (``"fp32"``, ``"fp16"``).
        nan_fp32, nan_fp16: the bits of a NaN result, or None for "host NaN": the
            unit's NaN bits are unknown (the reference ran on a host CPU whose NaN bits
            it kept), a NaN result is written as the quiet NaN 0x7FC00000 / 0x7E00
            and checks compare NaN-ness only.
        mx_block: K positions per E8M0 block scale that the unit applies inside its dot
            products (OCP MX: 32; :func:`matmul`'s ``scale_a``/``scale_b``), or 0 for a
            unit without block-scaled instructions (the JAX bridge's ``"block:N"``
            recipe then scales in software around it).
    """

    name: str
    description: str
    rules: MappingProxyType
    accumulators: tuple = ("fp32", "fp16")
    nan_fp32: int | None = 0x7FFFFFFF
    nan_fp16: int | None = 0x7FFF
    mx_block: int = 0

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
            if not isinstance(fmt, str) or fmt.split("/")[0] not in FORMATS or fmt.count("/") > 1 \
                    or fmt.endswith("/"):
                raise ValueError(f"rules keys must be formats in {sorted(FORMATS)} (or 'FORMAT/VARIANT'), "
                                 f"not {fmt!r}")
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
            if v is None:
                continue
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << f.width) \
                    or not np.isnan(f.decode(np.array([v], f.uint_dtype))[0]):
                raise ValueError(f"{attr} must be the bits of a {fmt} NaN, not {v!r}")
        if not isinstance(self.mx_block, int) or isinstance(self.mx_block, bool) or self.mx_block < 0:
            raise ValueError(f"mx_block must be an int >= 0 (K positions per block scale; 0: none), "
                             f"not {self.mx_block!r}")
        object.__setattr__(self, "rules", MappingProxyType(rules))

    def rule(self, input_format: str, b_format: str | None = None, variant: str | None = None) -> StepRule:
        """The step rule for an input format name (and B's, when it differs, and an
        instruction variant); ValueError if unsupported or if A's and B's formats
        follow different rules."""
        if variant is not None and not isinstance(variant, str):
            raise TypeError(f"variant must be a str or None, not {type(variant).__name__}")
        keys = [input_format] if b_format is None or b_format == input_format else [input_format, b_format]
        rules = []
        for f in keys:
            key = f if variant is None else f"{f}/{variant}"
            if key not in self.rules:
                raise ValueError(f"profile {self.name!r} supports input formats {sorted(self.rules)}, "
                                 f"not {key!r}")
            rules.append(self.rules[key])
        if len(rules) == 2 and rules[0] != rules[1]:
            raise ValueError(f"profile {self.name!r} has different rules for {input_format!r} and {b_format!r}: "
                             f"a and b must be formats of one rule, not {input_format!r} x {b_format!r}")
        return rules[0]

    @property
    def host_nan(self) -> bool:
        """Whether NaN results compare by class only (see ``nan_fp32``)."""
        return self.nan_fp32 is None

    def __hash__(self):
        return hash((self.name, tuple(sorted(self.rules.items()))))


def _uniform(k16, **kw):
    """Rules for the 16-bit formats plus tf32 at half the K (tf32 instructions are k8)."""
    return {"fp16": StepRule(k16, **kw), "bf16": StepRule(k16, **kw), "tf32": StepRule(max(1, k16 // 2), **kw)}


# MMA-Sim's zero-operand convention: a zero operand counts with this exponent
_MMASIM_ZERO = -126
_BLACKWELL = {**{f: StepRule(16, frac_bits=25, zero_exp=_MMASIM_ZERO) for f in ("fp16", "bf16")},
              "tf32": StepRule(8, frac_bits=25, zero_exp=_MMASIM_ZERO),
              **{f: StepRule(32, frac_bits=25, zero_exp=_MMASIM_ZERO) for f in ("e4m3", "e5m2", "e2m3", "e3m2", "e2m1")}}
# AMD: an IEEE binary32 fma chain (f32 mfma), pairwise binary32 trees (CDNA1/2 f16/bf16)
_AMD_FMA = StepRule(1, frac_bits=None, rounding="rne", operand_rounding="rne", overflow="ieee")
_FLUSH_ALL = frozenset({"inputs", "nodes", "accumulator"})


def _pairwise(k, flush=frozenset()):
    return StepRule(k, tree="pairwise", c_mode="after", rounding="rne", overflow="ieee", flush=flush)


_CDNA3 = StepRule(8, frac_bits=24, zero_exp=_MMASIM_ZERO, c_mode="aligned", sum_frac_bits=31, c_frac_bits=24,
                  align_rounding="rd", product_overflow="inf", rounding="rne", overflow="ieee", zero_result="signed")

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
        DatapathProfile(
            "ada",
            "NVIDIA Ada Lovelace (sm_89) mma: FP8 (e4m3, e5m2, mixed) in steps of 16 products + C, "
            "13 fractional bits, binary32 result truncated to 13 mantissa bits (an m16n8k32 is two "
            "chained steps); 16-bit and tf32 as ampere; a zero operand counts with exponent -126. "
            "Source: MMA-Sim (FP8 checked bit for bit on its vectors; 16-bit/tf32 are its Ampere rules)",
            {**{f: StepRule(8, frac_bits=24, zero_exp=_MMASIM_ZERO) for f in ("fp16", "bf16")},
             "tf32": StepRule(4, frac_bits=24, zero_exp=_MMASIM_ZERO),
             **{f: StepRule(16, frac_bits=13, result_man_bits=13, zero_exp=_MMASIM_ZERO) for f in ("e4m3", "e5m2")}},
        ),
        DatapathProfile(
            "blackwell",
            "NVIDIA Blackwell (sm_100) mma and tcgen05 (kind f16, tf32, f8f6f4): one fused step per "
            "instruction (16-bit k16, tf32 k8, FP8 k32), 25 fractional bits, RZ; a zero operand counts "
            "with exponent -126. Source: MMA-Sim, checked bit for bit; FP6/FP4 without scales are "
            "assumed to follow the FP8 path (MMA-Sim cannot run them)",
            _BLACKWELL,
        ),
        DatapathProfile(
            "rtx_blackwell",
            "NVIDIA RTX Blackwell (sm_120) mma: the same arithmetic as blackwell in MMA-Sim (FP8 k32, "
            "25 fractional bits, no split of K). Source: MMA-Sim, checked bit for bit on its FP8 vectors",
            _BLACKWELL,
        ),
        DatapathProfile(
            "blackwell_mx",
            "NVIDIA Blackwell block-scaled mma / tcgen05 (MXFP8, MXFP6, MXFP4, NVFP4): scales (ue8m0 per "
            "32 K positions, or ue8m0/ue4m3 per 16 for FP4) enter each term's value and exponent; FP8/FP6 "
            "k32, 25 fractional bits; FP4 k64 with groups of 16 products summed exactly, 35 fractional "
            "bits; a zero operand counts with exponent -126. Source: MMA-Sim, checked bit for bit "
            "(FP6 assumed to follow FP8)",
            {**{f: StepRule(32, frac_bits=25, zero_exp=_MMASIM_ZERO) for f in ("e4m3", "e5m2", "e2m3", "e3m2")},
             "e2m1": StepRule(64, frac_bits=35, zero_exp=_MMASIM_ZERO, group_k=16)},
            accumulators=("fp32",), mx_block=32,
        ),
        DatapathProfile(
            "cdna1",
            "AMD CDNA1 (MI100) mfma: f32 an IEEE fma chain; f16 a pairwise binary32 tree of 4 products, "
            "bf16 of 2, then C added, round to nearest even. Source: MMA-Sim, checked bit for bit "
            "(NaN results compared as NaN: MMA-Sim's NaN bits are its host's)",
            {"fp32": _AMD_FMA, "fp16": _pairwise(4), "bf16": _pairwise(2)},
            accumulators=("fp32",), nan_fp32=None, nan_fp16=None,
        ),
        DatapathProfile(
            "cdna2",
            "AMD CDNA2 (MI200) mfma: as cdna1 with subnormals flushed (inputs, tree nodes, accumulator); "
            "f16 and bf16 (_1k instructions) trees of 4; the legacy bf16 instructions (no _1k) are "
            "variant 'legacy', trees of 2. Source: MMA-Sim, checked bit for bit (NaN as NaN)",
            {"fp32": _AMD_FMA, "fp16": _pairwise(4, _FLUSH_ALL), "bf16": _pairwise(4, _FLUSH_ALL),
             "bf16/legacy": _pairwise(2, _FLUSH_ALL)},
            accumulators=("fp32",), nan_fp32=None, nan_fp16=None,
        ),
        DatapathProfile(
            "cdna3",
            "AMD CDNA3 (MI300) mfma: f32 an IEEE fma chain; f16/bf16 steps of 8 products (xf32: 4) fused "
            "with 24 fractional bits, C re-aligned (31/24 bits, rounded down) and added, RNE; products "
            "past binary32 give inf; fp8/bf8 (fnuz) steps of 16 in two interleaved passes (even/odd K), "
            "C dropped 25 binades below. Source: MMA-Sim, checked bit for bit (NaN as NaN)",
            {"fp32": _AMD_FMA, **{f: _CDNA3 for f in ("fp16", "bf16")},
             "tf32": dataclasses.replace(_CDNA3, k=4),
             **{f: dataclasses.replace(_CDNA3, k=16, passes=(0, 1), pass_merge="parallel", c_drop=25)
                for f in ("e4m3fnuz", "e5m2fnuz")}},
            accumulators=("fp32",), nan_fp32=None, nan_fp16=None,
        ),
        DatapathProfile(
            "tpu",
            "Google TPU MXU (assumed; no bit-accurate TPU reference exists): bf16 operands, exact "
            "products, binary32 round-to-nearest-even accumulation along K, one product at a time as a "
            "systolic column adds it (published: bf16 inputs, fp32 accumulation). float32 inputs are "
            "split into bf16 parts (precision='x1'/'x3'/'x6' of matmul, as XLA's BF16_BF16_F32_X1/X3/X6 "
            "dot algorithms; the order the partial products are summed is assumed)",
            {"bf16": StepRule(1, frac_bits=None, rounding="rne", operand_rounding="rne")},
            accumulators=("fp32",), nan_fp32=0x7FC00000,
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
