"""Protection schemes as frozen, validated parameter objects.

Every scheme has (a) a pure reference computation (``reference_*``: Python integers,
``%``, ``math.fsum``), (b) the stages and check bits it adds to a PE or to the array
(:meth:`sites`, :meth:`fold_cycles`, :meth:`added_bits`; the stage model itself is the
bit-level code of :mod:`protection._codes` and the checkers below), and (c) its
``action`` on detection:

* ``"flag"``: raise an alarm, leave D as it is (a detected, uncorrected error);
* ``"recompute"``: re-run the affected tile (the output block of one fold's N-tile);
* ``"correct"``: the scheme's own correction (SEC-DED: in the register; ABFT: locate
  a single faulty output and recompute that element, else recompute the tile);
* ``"clamp"`` / ``"zero"`` (range check): replace the out-of-range outputs.

Timing: fault cycles count in the unprotected array's schedule; a scheme's stages
lengthen each fold by :meth:`fold_cycles` (reported by ``ProtectedArray.cycles``) but
do not move the datapath's registers relative to one another.

Check bits and checker registers are fault sites (:class:`Site`):

* ``"<reg>.par"`` / ``"<reg>.ecc"`` / ``"<reg>.res"``: the check bits stored beside a
  protected register (per element), live whenever the register is;
* ``"dup.<reg>"``: DMR's copy of a register of the accumulator path;
* ``"par_err"`` / ``"ecc_err"`` / ``"res_err"``: a PE's sticky error flag (1 bit, read
  at the end of every fold, so live every cycle);
* edge registers below the bottom row (``pe=(rows, col)``): ``"range_flag"``,
  ``"dmr_flag"`` (1 bit per column) and ABFT's 64-bit checksum registers
  ``"abft_rsum"``, ``"abft_rref"``, ``"abft_csum"``, ``"abft_cref"``, each live in the
  cycles the column's outputs leave the array.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from simulator import Register, Schedule, flip_bits

from ._codes import (STATUS_CORRECTED, STATUS_DETECTED, parity, parity_ref, residue, residue_ref,
                     secded_code)

__all__ = ["Scheme", "Parity", "SecDed", "Residue", "Abft", "RangeCheck", "Dmr", "Site", "SCHEMES"]

# edge registers (below the bottom row): 64-bit binary64 checksums and 1-bit flags
EDGE = "edge"


@dataclass(frozen=True)
class Site:
    """A fault site a scheme adds.

    Attributes:
        name: register name (faults name it).
        width: bits per location (a PE, or a column for edge registers).
        scope: ``"pe"`` or ``"edge"`` (one per column, addressed as ``pe=(rows, col)``).
        live: ``"mirror"`` (live when ``mirror`` is), ``"all"`` (every cycle),
            ``"final"`` / ``"fold"`` (edge: as the column's outputs leave the array in a
            tile's last fold / in every fold).
        mirror: the base register it shadows (check bits, DMR copies), else "".
        elem_width: bits per element of ``mirror`` it holds (check bits per element).
        scheme: the owning scheme's ``name``.
    """

    name: str
    width: int
    scope: str
    live: str
    mirror: str = ""
    elem_width: int = 0
    scheme: str = ""


class Scheme(ABC):
    """What every protection scheme implements: the one interface ``ProtectedArray``
    and its evaluator use (a new scheme is one subclass; nothing else changes).

    Cost and sites, from the :class:`simulator.Schedule` of a GEMM and the input and
    accumulator formats: :meth:`sites` (the fault sites it adds), :meth:`added_bits`,
    :meth:`fold_cycles`.  What it covers: :meth:`encoded` (registers whose words its
    code checks; :meth:`judge` decides an error pattern), :meth:`duplicated`
    (registers it keeps a copy of).  Its behaviour in one evaluation (``j``: a
    :class:`protection.Judgement`, ``q``: the scheme's index in the array's tuple):
    :meth:`golden_alarm` (alarms on the fault-free run), :meth:`edge_fault` (a fault
    in one of its edge registers), :meth:`check` (its checker after the datapath ran
    under the faults, with its own action), :meth:`on_alarm` (its action when it
    alarmed and :meth:`check` did not act).
    """

    action: str = "flag"

    @property
    @abstractmethod
    def name(self) -> str:
        """Short name (alarms and reports)."""

    @abstractmethod
    def sites(self, plan: Schedule, fmt, acc) -> tuple:
        """The :class:`Site` values (fault sites) the scheme adds."""

    @abstractmethod
    def added_bits(self, plan: Schedule, fmt, acc) -> int:
        """Check bits and checker registers it adds to the array (bits)."""

    @abstractmethod
    def fold_cycles(self, plan: Schedule) -> int:
        """Cycles its stages add to each fold."""

    def encoded(self, plan: Schedule) -> tuple:
        """Registers whose words its code checks (faults there go through :meth:`judge`)."""
        return ()

    def duplicated(self, plan: Schedule) -> tuple:
        """Registers it keeps a second copy of (``dup.<reg>`` sites)."""
        return ()

    def judge(self, e_data: int, e_check: int, reg: Register, fmt, acc):
        """(data error left, detected, corrected) for error patterns on one element's
        data and check bits (codes only)."""
        raise NotImplementedError(f"{type(self).__name__} encodes no register")

    def golden_alarm(self, evaluator) -> bool:
        """Whether it alarms on the fault-free run (a false alarm).  Codes and DMR
        compare a value with itself when nothing flipped: never."""
        return False

    def edge_fault(self, q: int, j, register: str, ij: tuple, bits: tuple) -> None:
        """A live fault in one of its edge registers (``register``, bits ``bits``) at the
        output ``ij`` leaving the array; a 1-bit flag: the alarm is raised."""
        j.alarm(q)

    def check(self, q: int, j) -> None:
        """Its checker on the faulty run (alarms and its own action); default: none."""

    def on_alarm(self, q: int, j) -> None:
        """Its action once alarmed: ``"recompute"`` re-runs the changed tile(s)."""
        if self.action == "recompute":
            j.recompute_changed()


def _check_action(action, allowed):
    if action not in allowed:
        raise ValueError(f"action must be one of {allowed}, not {action!r}")


def _check_registers(regs):
    if regs is None:
        return None
    if isinstance(regs, str) or not isinstance(regs, tuple) or not regs or \
            any(not isinstance(r, str) for r in regs):
        raise TypeError(f"registers must be a non-empty tuple of register names or None, not {regs!r}")
    if len(set(regs)) != len(regs):
        raise ValueError(f"registers must not repeat a name, not {regs!r}")
    return regs


def _latency_cost(plan, name: str) -> int:
    """Cycles per fold one more pipeline stage on every read of register ``name`` costs.

    On the partial-sum chain (weight-stationary psum, and a DPU's stages between the C
    read and psum when C is fused): one cycle per row hop plus one at the output (R).
    A moving operand: one per hop plus one (C for ``a``, R for ``b``).  An
    output-stationary accumulator read back every cycle by its adder: the accumulate
    loop takes two cycles (K).  Anything else (stationary weights, internal stages):
    one cycle of depth.
    """
    reg = plan.register(name)
    if plan.dataflow == "os" and reg.role == "psum":
        return plan.k
    if reg.flow == "right":
        return plan.cols
    if reg.flow == "down":
        return plan.rows
    if plan.dataflow == "ws" and reg.role == "psum":
        return plan.rows
    chain = ("emax", "aligned", "sum", "x")
    if plan.step > 1 and plan.row_interval > 1 and reg.role in chain:  # C fused: these sit between C's read and psum
        return plan.rows
    return 1


class _CodeScheme(Scheme):
    """Shared by the register codes (parity, SEC-DED, residue)."""

    suffix = ""
    flag = ""

    def covered(self, plan) -> tuple:
        regs = self.registers if self.registers is not None else self._default(plan)
        for r in regs:
            if r not in plan.register_names:
                raise ValueError(f"registers must name registers of the array, one of "
                                 f"{sorted(plan.register_names)}, not {r!r}")
        return tuple(regs)

    def encoded(self, plan) -> tuple:
        return self.covered(plan)

    def _default(self, plan):
        return (plan.accumulator,)

    def sites(self, plan, fmt, acc) -> tuple:
        out = [Site(f"{r}.{self.suffix}", plan.register(r).elems * self.check_width(plan.register(r), fmt, acc),
                    "pe", "mirror", r, self.check_width(plan.register(r), fmt, acc), self.name)
               for r in self.covered(plan)]
        out.append(Site(self.flag, 1, "pe", "all", scheme=self.name))
        return tuple(out)

    def added_bits(self, plan, fmt, acc) -> int:
        return sum(s.width for s in self.sites(plan, fmt, acc)) * plan.rows * plan.cols

    def fold_cycles(self, plan) -> int:
        return 1  # checkers run beside the readers; the sticky flag latches one cycle after the last read


@dataclass(frozen=True)
class Parity(_CodeScheme):
    """Even parity, one bit per element of each protected register.

    Stages: a parity generator (XOR tree) before each protected register, a checker
    beside each reader; a mismatch sets the PE's sticky ``par_err`` flag.  Detects every
    odd number of flipped bits in an element (data or parity bit), corrects nothing.

    Attributes:
        registers: names of PE registers to protect (None: the accumulator, ``psum``
            or ``acc``).
        action: ``"flag"`` or ``"recompute"``.
    """

    registers: tuple | None = None
    action: str = "flag"
    suffix = "par"
    flag = "par_err"

    def __post_init__(self):
        _check_registers(self.registers)
        _check_action(self.action, ("flag", "recompute"))

    @property
    def name(self) -> str:
        return "parity"

    def check_width(self, reg, fmt, acc) -> int:
        return 1

    @staticmethod
    def reference(data: int) -> int:
        """The parity bit of a data word (pure Python)."""
        return parity_ref(data)

    def judge(self, e_data: int, e_check: int, reg, fmt, acc):
        """(data error left, detected, corrected) for error patterns on one element's
        data and check bits.  Parity is linear: the checker sees parity(e_data) ^ e_check."""
        detected = bool(int(parity(np.uint64(e_data))) ^ (e_check & 1))
        return e_data, detected, False


@dataclass(frozen=True)
class SecDed(_CodeScheme):
    """Extended Hamming SEC-DED, r + 1 check bits per element of each protected register.

    Stages: an encoder before each protected register, a decoder-corrector in series
    with each reader (one pipeline stage: see ``fold_cycles``); an uncorrectable word
    sets the PE's sticky ``ecc_err`` flag.  Corrects any single flipped bit (data or
    check), detects any two.

    Attributes:
        registers: names of PE registers to protect (None: the accumulator).
        action: on an uncorrectable word: ``"flag"`` or ``"recompute"``.
    """

    registers: tuple | None = None
    action: str = "flag"
    suffix = "ecc"
    flag = "ecc_err"

    def __post_init__(self):
        _check_registers(self.registers)
        _check_action(self.action, ("flag", "recompute"))

    @property
    def name(self) -> str:
        return "sec-ded"

    def check_width(self, reg, fmt, acc) -> int:
        return secded_code(reg.elem_width).check_bits

    def fold_cycles(self, plan) -> int:
        return 1 + sum(_latency_cost(plan, r) for r in self.covered(plan))

    @staticmethod
    def reference(data: int, width: int) -> int:
        """The check word of a data word (pure Python)."""
        return secded_code(width).encode_ref(data)

    def judge(self, e_data: int, e_check: int, reg, fmt, acc):
        """Hamming codes are linear: decoding (v ^ e_data, encode(v) ^ e_check) leaves the
        same error for every v, so the decoder is run on the error pattern itself."""
        code = secded_code(reg.elem_width)
        left, status = code.decode(e_data, e_check)
        return left, status == STATUS_DETECTED, status == STATUS_CORRECTED


def _fields(reg, fmt, acc):
    """(lo, hi, kind) bit fields of one element: "res" integer fields a residue covers,
    "dup" single bits (signs) a duplicate covers.  Empty: not residue-checkable."""
    if reg.role == "emax":  # the alignment control: no arithmetic to check a residue against
        return ()
    return tuple((lo, hi, "dup" if name == "sign" else "res") for name, lo, hi in reg.bit_fields)


@dataclass(frozen=True)
class Residue(_CodeScheme):
    """Residue code mod 2**k - 1 checking each MAC's multiplier and adder.

    Residues of the operands' significands and exponents are generated where the
    operands enter the array and travel with them; the multiplier's checker compares
    res(sig_p) with res(sig_a) * res(sig_w) and res(e_p) with res(e_a) + res(e_w) (signs
    by a duplicated XOR); the adder's checker (a DPU's adder tree; an FMA's aligned
    significand adder) compares res(sum) with the sum of the terms' residues; the
    rounded result gets a fresh residue that the next reader checks.  So every
    residue-carrying register is checked where it is read: ``a``, ``w``/``b``,
    products, aligned terms, sums, pass results and partial sums.  The alignment
    control (``emax``) is not residue-checkable and stays unprotected.

    Per element: k check bits per integer field (significand, exponent, magnitude) plus
    a duplicated sign bit.  A flip of one bit changes a field by 2**j, never a multiple
    of 2**k - 1, so every single-bit flip is detected; a multi-bit burst is judged by the
    change it makes to a field of zeros (the checker's decision for other values can
    differ: a limitation of judging by error pattern).

    Attributes:
        k: residue width in bits (modulus 2**k - 1), 2..16.
        registers: names of PE registers to protect (None: every residue-checkable one).
        action: ``"flag"`` or ``"recompute"``.
    """

    k: int = 3
    registers: tuple | None = None
    action: str = "flag"
    suffix = "res"
    flag = "res_err"

    def __post_init__(self):
        if not isinstance(self.k, int) or isinstance(self.k, bool) or not 2 <= self.k <= 16:
            raise ValueError(f"k must be an int in [2, 16], not {self.k!r}")
        _check_registers(self.registers)
        _check_action(self.action, ("flag", "recompute"))

    @property
    def name(self) -> str:
        return f"residue-{(1 << self.k) - 1}"

    def _default(self, plan):
        return tuple(r.name for r in plan.registers if r.role != "emax")

    def covered(self, plan) -> tuple:
        regs = super().covered(plan)
        bad = [r for r in regs if plan.register(r).role == "emax"]
        if bad:
            raise ValueError(f"registers must be residue-checkable (not the alignment exponent), not {bad}")
        return regs

    def check_width(self, reg, fmt, acc) -> int:
        return sum(self.k if kind == "res" else 1 for _, _, kind in _fields(reg, fmt, acc))

    @staticmethod
    def reference(x: int, k: int) -> int:
        """x mod 2**k - 1 (pure Python)."""
        return residue_ref(x, k)

    @staticmethod
    def reference_mac_check(a_sig: int, w_sig: int, p_sig: int, terms: tuple, total: int, k: int) -> bool:
        """Pure reference of the two checks: multiplier (p = a * w) and adder
        (total = sum of terms), each mod 2**k - 1.  True when both pass."""
        m = (1 << k) - 1
        return (a_sig * w_sig - p_sig) % m == 0 and (sum(terms) - total) % m == 0

    def judge(self, e_data: int, e_check: int, reg, fmt, acc):
        detected = False
        for lo, hi, kind in _fields(reg, fmt, acc):
            part = (e_data >> lo) & ((1 << (hi - lo)) - 1)
            if kind == "dup":
                detected |= part != 0
            else:
                detected |= int(residue(np.uint64(part), self.k)) != 0
        pos = 0
        for lo, hi, kind in _fields(reg, fmt, acc):  # the check bits: k per field, 1 per sign
            w = self.k if kind == "res" else 1
            part = (e_check >> pos) & ((1 << w) - 1)
            detected |= (int(residue(np.uint64(part), self.k)) != 0) if kind == "res" else part != 0
            pos += w
        return e_data, detected, False


@dataclass(frozen=True)
class Dmr(Scheme):
    """Dual modular redundancy of the accumulator path.

    The registers after the operand registers (products, alignment, sums, pass results,
    partial sums) are duplicated (``dup.<reg>`` fault sites) and fed the same operands;
    a comparator per column compares the two copies' outputs as each fold's partial
    sums leave the array (``dmr_flag``).  A fault in either copy is detected exactly
    when it changes that copy's fold output; a fault in the shared operand registers
    (``a``, ``w``/``b``) hits both copies alike and is not detected.

    Attributes:
        action: ``"recompute"`` or ``"flag"``.
    """

    action: str = "recompute"

    def __post_init__(self):
        _check_action(self.action, ("flag", "recompute"))

    @property
    def name(self) -> str:
        return "dmr"

    def covered(self, plan) -> tuple:
        return tuple(r.name for r in plan.registers if not r.operand)

    def sites(self, plan, fmt, acc) -> tuple:
        out = [Site(f"dup.{r}", plan.register(r).width, "pe", "mirror", r, plan.register(r).elem_width, self.name)
               for r in self.covered(plan)]
        out.append(Site("dmr_flag", 1, EDGE, "fold", scheme=self.name))
        return tuple(out)

    def added_bits(self, plan, fmt, acc) -> int:
        return (sum(plan.register(r).width for r in self.covered(plan)) * plan.rows + 1) * plan.cols

    def fold_cycles(self, plan) -> int:
        return 1  # the comparator stage below the bottom row

    def duplicated(self, plan) -> tuple:
        return self.covered(plan)

    def check(self, q, j) -> None:
        """Compares the two copies' fold outputs: a fault in one copy is detected when it
        changes that copy's fold output; shared operand faults hit both alike."""
        cov = set(self.covered(j.schedule))
        base, dup, g = j.base_faults, j.dup_faults, j.golden
        mine = [f for f in base if f.register in cov]
        shared = [f for f in base if f.register not in cov]
        if not (mine or dup):
            return
        if not shared and not dup:
            det = j.injection.fold_changed
        elif not base:
            det = g.inject(dup).fold_changed
        else:
            det = not _same_bits(j.output, g.inject(shared + dup).output)
        if det:
            j.alarm(q)

    @staticmethod
    def reference(main: np.ndarray, dup: np.ndarray) -> np.ndarray:
        """Mismatch per output element of the two copies' bits (NaNs compare equal)."""
        u = np.dtype(f"uint{main.dtype.itemsize * 8}")
        return ~((main.view(u) == dup.view(u)) | (np.isnan(main) & np.isnan(dup)))


@dataclass(frozen=True)
class RangeCheck(Scheme):
    """Range / exponent check of outputs, bounds learned by fault-free profiling.

    One comparator per column reads each output's exponent field as it leaves the
    array; an exponent above ``max_exp`` (an unbiased exponent: outputs with
    |x| >= 2**(max_exp + 1)) or a non-finite output sets ``range_flag``.  Learn the
    bound with :meth:`profile`.

    Attributes:
        max_exp: largest unbiased exponent an output may have.
        action: ``"recompute"`` (re-run the tile), ``"clamp"`` (to the largest value
            with exponent ``max_exp``, keeping the sign; NaN to 0) or ``"zero"``.
    """

    max_exp: int
    action: str = "recompute"

    def __post_init__(self):
        if not isinstance(self.max_exp, int) or isinstance(self.max_exp, bool) or not -200 <= self.max_exp <= 200:
            raise ValueError(f"max_exp must be an int in [-200, 200], not {self.max_exp!r}")
        _check_action(self.action, ("recompute", "clamp", "zero"))

    @property
    def name(self) -> str:
        return f"range-{self.action}"

    @classmethod
    def profile(cls, outputs, slack: int = 1, action: str = "recompute") -> "RangeCheck":
        """Learn ``max_exp`` from fault-free outputs (arrays of a layer): the largest
        exponent seen, plus ``slack`` (>= 0; each step doubles the bound)."""
        if not isinstance(slack, int) or slack < 0:
            raise ValueError(f"slack must be an int >= 0, not {slack!r}")
        top = -200
        for d in outputs:
            d = np.asarray(d, np.float64)
            fin = np.abs(d[np.isfinite(d) & (d != 0)])
            if fin.size:
                top = max(top, int(np.floor(np.log2(fin.max()))))
        return cls(min(200, top + slack), action)

    def sites(self, plan, fmt, acc) -> tuple:
        return (Site("range_flag", 1, EDGE, "final", scheme=self.name),)

    def added_bits(self, plan, fmt, acc) -> int:
        return plan.cols + 8 + acc.exp_bits  # flags, the bound register, the exponent comparators' latch

    def fold_cycles(self, plan) -> int:
        return 1

    def reference(self, d: np.ndarray) -> np.ndarray:
        """Out-of-range mask (pure: magnitudes against 2**(max_exp + 1))."""
        d = np.asarray(d, np.float64)
        with np.errstate(invalid="ignore"):
            return ~np.isfinite(d) | (np.abs(d) >= 2.0 ** (self.max_exp + 1))

    def check_bits(self, d: np.ndarray, acc) -> np.ndarray:
        """The stage model: one comparator per column on each output's magnitude bits
        (exponent field, then mantissa: encodings of non-negative values order like
        their values) against the encoding of 2**(max_exp + 1); inf and NaN encodings
        lie above every finite threshold."""
        e = self.max_exp + 1
        if e > acc.emax:
            thr = ((1 << acc.exp_bits) - 1) << acc.man_bits  # infinity: only non-finite outputs
        elif e >= acc.emin:
            thr = (e + acc.bias) << acc.man_bits
        elif e >= acc.emin - acc.man_bits:
            thr = 1 << (e - (acc.emin - acc.man_bits))  # a subnormal power of two
        else:
            thr = 1  # every nonzero output
        mag = d.view(acc.uint_dtype).astype(np.int64) & ((1 << (acc.exp_bits + acc.man_bits)) - 1)
        return mag >= thr

    def clamp(self, d: np.ndarray, acc) -> np.ndarray:
        """Clamped values (binary64) of flagged outputs, for ``action="clamp"``."""
        top = (2.0 - 2.0 ** -acc.man_bits) * 2.0 ** self.max_exp
        d = np.asarray(d, np.float64)
        return np.where(np.isnan(d), 0.0, np.clip(d, -top, top))

    def golden_alarm(self, evaluator) -> bool:
        return bool(self.check_bits(evaluator.golden.output, evaluator.acc).any())

    def edge_fault(self, q, j, register, ij, bits) -> None:
        j.edge.setdefault(q, []).append(ij)  # a set range_flag: the output counts as flagged

    def check(self, q, j) -> None:
        inj = j.injection
        blk = j.output if j.changed_block is None else j.output[slice(*inj.rows), slice(*inj.cols)]
        idx = [tuple(x) for x in np.argwhere(self.check_bits(blk, j.acc))]
        if j.changed_block is not None:
            idx = [(i + inj.rows[0], jj + inj.cols[0]) for i, jj in idx]
        idx += j.edge.get(q, [])
        if not idx:
            return
        j.alarm(q)
        if self.action == "recompute":
            for i, jj in idx:
                j.recompute_tile(i, jj)
            return
        final = j.writable()
        for i, jj in idx:
            v = self.clamp(final[i:i + 1, jj:jj + 1], j.acc) if self.action == "clamp" else 0.0
            final[i, jj] = v if np.ndim(v) == 0 else v[0, 0]
        j.acted = True

    def on_alarm(self, q, j) -> None:
        pass  # acted in check


@dataclass(frozen=True)
class Abft(Scheme):
    """Algorithm-based fault tolerance: row and column checksums of each output tile.

    A checksum unit beside the array computes, from the operands as they stream in,
    the reference row checksums rho_i = sum_j C_ij + sum_k A_ik (sum_j B_kj) and column
    checksums kappa_j = sum_i C_ij + sum_k (sum_i A_ik) B_kj of the tile (binary64),
    while the outputs of the tile's last fold are summed as they leave the array
    (a chain of row adders along the bottom edge, ``abft_rsum``; one column
    accumulator per column, ``abft_csum``; the references ride along in ``abft_rref``
    and ``abft_cref``).  A row (column) alarms when |sum - reference| exceeds its
    threshold: ``safety`` times a bound on the profile's own rounding error
    (:func:`abft_tolerance`) plus the binary64 checker's, so fault-free runs never
    alarm.  On detection: one row and one column alarm locate a single faulty output,
    which is recomputed (``action="correct"``); anything else recomputes the tile.

    Attributes:
        safety: factor on the rounding bound (>= 1).
        action: ``"correct"``, ``"recompute"`` or ``"flag"``.
    """

    safety: float = 2.0
    action: str = "correct"

    def __post_init__(self):
        if not isinstance(self.safety, (int, float)) or isinstance(self.safety, bool) or not 1.0 <= self.safety <= 1e6:
            raise ValueError(f"safety must be a number in [1, 1e6], not {self.safety!r}")
        _check_action(self.action, ("correct", "recompute", "flag"))

    @property
    def name(self) -> str:
        return "abft"

    def sites(self, plan, fmt, acc) -> tuple:
        return tuple(Site(n, 64, EDGE, "final", scheme=self.name)
                     for n in ("abft_rsum", "abft_rref", "abft_csum", "abft_cref"))

    def added_bits(self, plan, fmt, acc) -> int:
        return 4 * 64 * plan.cols

    def fold_cycles(self, plan) -> int:
        return 2  # the row chain's last adder and the comparators

    def golden_alarm(self, evaluator) -> bool:
        rows, cols = self._alarms(evaluator, evaluator.golden.output, None, ())
        return bool(rows.any() or cols.any())

    def edge_fault(self, q, j, register, ij, bits) -> None:
        j.edge.setdefault(q, []).extend((register, ij, b) for b in bits)

    def check(self, q, j) -> None:
        edge = j.edge.get(q, [])
        if j.changed_block is None and not edge and j.injection.fold >= 0:
            return  # nothing reached D or the checksum registers
        rows, cols = self._alarms(j.evaluator, j.output, j.changed_block, edge)
        if not (rows.any() or cols.any()):
            return
        j.alarm(q)
        if self.action == "flag":
            return
        g, s = j.golden, j.schedule
        C = s.cols
        ri, rt = np.nonzero(rows)
        cj = np.nonzero(cols)[0]
        if self.action == "correct" and len(ri) == 1 and len(cj) == 1 and cj[0] // C == rt[0]:
            final = j.writable()
            i, jj = int(ri[0]), int(cj[0])
            if not j.permanent:
                final[i, jj] = g.output[i, jj]
            j.recompute_cycles += -(-g.shape[1] // s.step) + s.depth  # one dot product on one PE
            j.acted = True
        else:
            for i, t in zip(ri, rt):
                j.recompute_tile(int(i), int(t) * C)
            for jj in cj:
                j.recompute_tile(0, int(jj))

    def on_alarm(self, q, j) -> None:
        pass  # acted in check

    def _setup(self, ev):
        """Reference checksums and thresholds of the golden run (cached per evaluator)."""
        scratch = ev.scratch(self)
        if "setup" not in scratch:
            g = ev.golden
            a, b = g.a_values, g.b_values
            cv = g.c.astype(np.float64)
            tau = self.safety * abft_tolerance(g.rule, ev.fmt, ev.acc, a, b, cv)
            C = ev.schedule.cols
            nnt = ev.schedule.n_tiles
            with np.errstate(invalid="ignore", over="ignore"):
                bsum = np.stack([b[:, t * C:(t + 1) * C].sum(axis=1) for t in range(nnt)], axis=1)  # (K, nnt)
                rho = np.stack([cv[:, t * C:(t + 1) * C].sum(axis=1) for t in range(nnt)], axis=1) + a @ bsum
                kappa = cv.sum(axis=0) + a.sum(axis=0) @ b
                S_abs = np.abs(cv) + np.abs(a) @ np.abs(b)
                tau_row = np.stack([tau[:, t * C:(t + 1) * C].sum(axis=1) for t in range(nnt)], axis=1) + \
                    2.0 ** -40 * np.stack([S_abs[:, t * C:(t + 1) * C].sum(axis=1) for t in range(nnt)], axis=1)
                tau_col = tau.sum(axis=0) + 2.0 ** -40 * S_abs.sum(axis=0)
            scratch["setup"] = (rho, kappa, tau_row, tau_col, C, nnt)
        return scratch["setup"]

    def _alarms(self, ev, out, block, edge):
        """Row alarms (M, nnt) and column alarms (N,) of the stage model: binary64 sums in
        the order outputs leave the array (sequential along a row's columns, down a
        column), with edge-register faults ``edge`` ((name, (i, j), bit)) applied.
        ``block`` ((i0, i1), (n0, n1)) limits the re-summing to what changed."""
        rho, kappa, tau_row, tau_col, C, nnt = self._setup(ev)
        scratch = ev.scratch(self)
        with np.errstate(invalid="ignore", over="ignore"):
            if scratch.get("sums") is None or block is None:
                dd = out.astype(np.float64)
                rs = np.stack([np.cumsum(dd[:, t * C:(t + 1) * C], axis=1)[:, -1] for t in range(nnt)], axis=1)
                cs = np.cumsum(dd, axis=0)[-1] if dd.shape[0] else np.zeros(dd.shape[1])
                if block is None and out is ev.golden.output:
                    scratch["sums"] = (rs, cs)
            else:
                rs, cs = (x.copy() for x in scratch["sums"])
                (i0, i1), (n0, n1) = block
                t = n0 // C
                rs[i0:i1, t] = np.cumsum(out[i0:i1, t * C:(t + 1) * C].astype(np.float64), axis=1)[:, -1]
                cs[n0:n1] = np.cumsum(out[:, n0:n1].astype(np.float64), axis=0)[-1]
            rref, cref = rho.copy(), kappa.copy()
            for name, (i, j), bit in edge:
                t = j // C
                if name == "abft_rsum":
                    v = np.cumsum(out[i, t * C:j + 1].astype(np.float64))[-1]
                    rs[i, t] += _flip64(v, bit) - v
                elif name == "abft_csum":
                    v = np.cumsum(out[:i + 1, j].astype(np.float64))[-1]
                    cs[j] += _flip64(v, bit) - v
                elif name == "abft_rref":
                    rref[i, t] = _flip64(rref[i, t], bit)
                else:
                    cref[j] = _flip64(cref[j], bit)
            rows = ~(np.abs(rs - rref) <= tau_row) & np.isfinite(tau_row)
            cols = ~(np.abs(cs - cref) <= tau_col) & np.isfinite(tau_col)
        return rows, cols

    @staticmethod
    def reference_check(d, rho, kappa, tau_row, tau_col):
        """Pure reference: (row alarms (M,), column alarms (N,)) of a tile, exact sums."""
        d = np.asarray(d, np.float64)
        rows = np.array([not (abs(math.fsum(d[i]) - rho[i]) <= tau_row[i]) if np.isfinite(tau_row[i]) else False
                         for i in range(d.shape[0])], bool)
        cols = np.array([not (abs(math.fsum(d[:, j]) - kappa[j]) <= tau_col[j]) if np.isfinite(tau_col[j]) else False
                         for j in range(d.shape[1])], bool)
        return rows, cols


def abft_tolerance(rule, fmt, acc, a_vals, b_vals, c_vals) -> np.ndarray:
    """Per-output bound (M, N) float64 on |D - (C + A @ B)| for a profile's rule.

    With A^ = max(|A|, 2**emin_in), B^ likewise and S = |C| + A^ @ B^ (which bounds every
    term, partial sum and alignment weight 2**E of the element), one step of P passes
    of at most kp products each loses at most P (kp + 1) 2**-F S by alignment
    (frac_bits F) and (P + 2) 2**-p S by roundings (p: result mantissa bits, 10 for a
    binary16 accumulator), each doubled for slack; an IEEE fused step loses 2 * 2**-p S.
    Binary32/16 subnormal quanta add an absolute floor.  Summed over ceil(K/k) steps.
    Non-finite inputs give inf (the element cannot be checked).
    """
    a_vals, b_vals, c_vals = (np.asarray(x, np.float64) for x in (a_vals, b_vals, c_vals))
    K = a_vals.shape[1]
    steps = max(1, -(-K // rule.k))
    p = min(rule.result_man_bits, acc.man_bits)
    with np.errstate(invalid="ignore", over="ignore"):
        ah = np.maximum(np.abs(a_vals), 2.0 ** fmt.emin)
        bh = np.maximum(np.abs(b_vals), 2.0 ** fmt.emin)
        S = np.abs(c_vals) + 2.0 ** acc.emin + ah @ bh
    if rule.frac_bits is None:
        rel, n_round = 2.0 * 2.0 ** -p, 1
    else:
        n_pass = max(rule.passes) + 1
        kp = -(-rule.k // n_pass)
        rel = 2.0 * (n_pass * (kp + 1) * 2.0 ** -rule.frac_bits + (n_pass + 2) * 2.0 ** -p)
        n_round = n_pass + 2
    tau = steps * (rel * S + n_round * 2.0 ** (acc.emin - acc.man_bits + 1))
    tau[~np.isfinite(S)] = np.inf
    return tau


def _flip64(v: float, bit: int) -> float:
    """v (binary64) with bit ``bit`` of its encoding flipped (a checksum register fault)."""
    return float(flip_bits(np.array([v], np.float64), 0, bit)[0])


def _same_bits(x: np.ndarray, y: np.ndarray) -> bool:
    return np.array_equal(x.view(np.uint8), y.view(np.uint8))


#: The built-in schemes (each a :class:`Scheme`).
SCHEMES = (Parity, SecDed, Residue, Abft, RangeCheck, Dmr)
