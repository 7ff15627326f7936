"""Processing elements: their pipeline registers and when each one latches.

A PE is described, not simulated, here: which registers it has (the fault sites),
how wide each is for a given input and accumulator format, and the cycle at which
each register latches an item's value relative to the item's *base cycle* ``b``
(the cycle the PE multiplies that item).  The array (:mod:`simulator._array`) places
PEs in a grid and gives each item its base cycle; the kernels and the reference
stepper use these offsets.

Scalar FMA PE (``systolic_fma``), pipeline depth d:
    ``a`` (latched b-1), ``w`` or ``b`` (the other operand: stationary ``w`` in
    weight-stationary, moving ``b`` in output-stationary), ``prod1..prod{d-1}``
    (the exact product, latched b+s-1), ``psum`` / ``acc`` (latched b+d-1).  The
    multiplier is pipelined, the add is one cycle, so a partial sum moves one row per
    cycle (skew S = 1) and the whole array takes d-1 more cycles per fold.

Dot-product unit (tensor core), k products per step in P passes (``rule.passes``):
    ``a``, ``w`` (k operands each), ``prod`` (k exact products), then per pass p
    the three stages ``emax``/``aligned`` (exponent compare and alignment), ``sum``
    (exact sum with its exponent) and a rounding: into ``x{p+1}`` (the pass's
    binary32 result, the term carried into pass p+1) for every pass but the last,
    into ``psum`` (the step's result, C added when c_mode is "after") for the last.
    Pass 0's registers are ``emax``, ``aligned``, ``sum``; pass p >= 1's carry the
    suffix p (``emax1``, ``aligned1``, ``sum1``).  A one-pass step (P = 1) is
    ``a, w, prod, emax, aligned, sum, psum``.

    Timing: pass p's operands, products and stages run 3p cycles after pass 0's
    (its K slice of A is skewed in 3p cycles later at the array's edge, as the
    rows of A are skewed), because pass p's alignment needs the exponent of pass
    p-1's rounded result: an element of ``a``/``prod`` of pass p latches at
    b-1+3p / b+3p, ``w`` is read at b+3p; ``emax{p}``/``aligned{p}`` latch at
    b+1+3p, ``sum{p}`` at b+2+3p, ``x{p+1}`` at b+3+3p, ``psum`` at b+3P.  Each
    extra pass costs 3 cycles of latency (depth 3P + 1 from the operand register
    to psum), none of throughput: one step enters every unit every cycle.
    C is read by pass 0's alignment (c_mode "fused", cycle b+1) or by the final
    add (c_mode "after", cycle b+3P), so the partial sum moves one row every
    S = 3P or S = 1 cycles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _array_kernels as AK
from ._formats import Format


@dataclass(frozen=True)
class Register:
    """One named pipeline register of a PE.

    Attributes:
        name: the fault-site name.
        code: register code used by the kernels (``REG_*`` in ``_array_kernels``).
        stage: which of several same-code registers (prod stage s, the pass of a
            DPU's emax/aligned/sum/x registers), else 0.
        latch: latch cycle relative to the item's base cycle (moving registers).
        elem_width: bits of one element; elems: elements (1, or k for vectors).
        stationary: True for a register that holds one value for a whole fold.
        flows: direction a moving operand is passed to the next PE: "right",
            "down" or "" (not passed on).
        elem_delay: per element, cycles its latch comes after ``latch`` (for a
            stationary register: its read comes after the item's base cycle);
            a multi-pass DPU's pass-p operands and products: 3p.  () for none.
    """

    name: str
    code: int
    stage: int
    latch: int
    elem_width: int
    elems: int = 1
    stationary: bool = False
    flows: str = ""
    elem_delay: tuple = ()

    @property
    def width(self) -> int:
        """Register width in bits."""
        return self.elem_width * self.elems

    def delay(self, elem: int) -> int:
        """Cycles element ``elem`` latches (or is read) after ``latch``."""
        return self.elem_delay[elem] if self.elem_delay else 0

    def delays(self) -> tuple:
        """The distinct element delays, ascending."""
        return tuple(sorted(set(self.elem_delay))) if self.elem_delay else (0,)


def prod_width(fmt: Format) -> int:
    """Bits of an exact-product register: sign, 10-bit exponent, 2*(man+1)-bit significand."""
    return 1 + AK.EXP_BITS + 2 * (fmt.man_bits + 1)


def fma_registers(dataflow: str, depth: int, fmt: Format, acc: Format) -> tuple:
    """Registers of a scalar-FMA PE (see the module docstring)."""
    regs = [Register("a", AK.REG_A, 0, -1, fmt.width, flows="right")]
    if dataflow == "ws":
        regs.append(Register("w", AK.REG_W, 0, -1, fmt.width, stationary=True))
    else:
        regs.append(Register("b", AK.REG_W, 0, -1, fmt.width, flows="down"))
    for s in range(1, depth):
        regs.append(Register(f"prod{s}", AK.REG_PROD, s, s - 1, prod_width(fmt)))
    regs.append(Register("psum" if dataflow == "ws" else "acc", AK.REG_PSUM, 1, depth - 1, acc.width))
    return tuple(regs)


PASS_CYCLES = 3  # cycles per pass: align (emax, aligned), sum, round


def pass_layout(k: int, passes: tuple):
    """Positions of one step's K slice by pass.

    Returns ``(pass_of, order, start)``: ``pass_of`` (k,) int64, the pass of each
    position (``passes[t % len(passes)]``); ``order`` (k,) int64, the positions
    sorted by pass (ascending within a pass); ``start`` (P+1,) int64, where each
    pass's positions begin in ``order``.
    """
    pass_of = np.array([passes[t % len(passes)] for t in range(k)], np.int64)
    order = np.argsort(pass_of, kind="stable").astype(np.int64)
    start = np.searchsorted(pass_of[order], np.arange(int(pass_of.max()) + 2)).astype(np.int64)
    return pass_of, order, start


def dpu_depth(n_pass: int) -> int:
    """Cycles from a DPU's operand register to its psum (both counted): 3P + 1."""
    return PASS_CYCLES * n_pass + 1


def dpu_psum_skew(n_pass: int, c_fused: bool) -> int:
    """Cycles between the psum of one row and the row below (S): C is read by pass 0's
    alignment (fused, b+1) or by the last pass's final add (after, b+3P)."""
    return PASS_CYCLES * n_pass if c_fused else 1


def dpu_registers(k: int, frac_bits: int, c_fused: bool, fmt: Format, acc: Format, passes: tuple = (0,)) -> tuple:
    """Registers of a k-wide dot-product unit (see the module docstring)."""
    pass_of, order, start = pass_layout(k, passes)
    n_pass = len(start) - 1
    delay = tuple(int(PASS_CYCLES * q) for q in pass_of) if n_pass > 1 else ()
    regs = [
        Register("a", AK.REG_A, 0, -1, fmt.width, k, flows="right", elem_delay=delay),
        Register("w", AK.REG_W, 0, -1, fmt.width, k, stationary=True, elem_delay=delay),
        Register("prod", AK.REG_PROD, 0, 0, prod_width(fmt), k, elem_delay=delay),
    ]
    for q in range(n_pass):
        kp = int(start[q + 1] - start[q])
        carried = c_fused if q == 0 else True
        sfx = str(q) if q else ""
        sw = AK.sum_int_bits(kp, frac_bits, carried)
        o = PASS_CYCLES * q
        regs += [Register(f"emax{sfx}", AK.REG_EMAX, q, o + 1, AK.EXP_BITS),
                 Register(f"aligned{sfx}", AK.REG_ALIGNED, q, o + 1, frac_bits + 3, kp + 1 if carried else kp),
                 Register(f"sum{sfx}", AK.REG_SUM, q, o + 2, AK.EXP_BITS + sw)]
        if q < n_pass - 1:
            regs.append(Register(f"x{q + 1}", AK.REG_X, q + 1, o + 3, 32))
    regs.append(Register("psum", AK.REG_PSUM, 1, PASS_CYCLES * n_pass, acc.width))
    return tuple(regs)


DPU_DEPTH = dpu_depth(1)  # a one-pass step: psum latches at b+3, four cycles from the operands
