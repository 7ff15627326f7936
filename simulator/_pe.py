"""Processing elements: their pipeline registers and when each one latches.

A PE is described, not simulated, here: which registers it has (the fault sites),
how wide each is for a given input and accumulator format, and the cycle at which
each register latches an item's value relative to the item's *base cycle* ``b``
(the cycle the PE multiplies that item).  The schedule (:mod:`simulator._schedule`)
places PEs in a grid and gives each item its base cycle; the kernels and the reference
stepper use these offsets.  :class:`Register` is public (``simulator.Register``):
each register's name, role, widths, timing and bit fields, which is all
:mod:`protection` and campaigns need to know of a PE.

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


#: Roles of PE registers (what a register holds), :attr:`Register.role`.
REGISTER_ROLES = ("a", "w", "b", "prod", "emax", "aligned", "sum", "x", "psum", "scale")

# the kernels' register code of each role ("b", the moving second operand of an
# output-stationary PE, is read where "w" is)
_ROLE_CODE = {"a": AK.REG_A, "w": AK.REG_W, "b": AK.REG_W, "prod": AK.REG_PROD, "emax": AK.REG_EMAX,
              "aligned": AK.REG_ALIGNED, "sum": AK.REG_SUM, "x": AK.REG_X, "psum": AK.REG_PSUM}


@dataclass(frozen=True)
class Register:
    """One named pipeline register of a PE: a fault site.

    Attributes:
        name: the fault-site name (``Fault.register``), e.g. ``"psum"``, ``"prod1"``.
        role: what it holds, one of :data:`REGISTER_ROLES`: ``"a"`` (the operand
            moving right), ``"w"`` (the stationary weight), ``"b"`` (the second
            operand moving down, output-stationary), ``"prod"`` (exact products),
            ``"emax"`` (a step's alignment exponent), ``"aligned"`` (aligned terms),
            ``"sum"`` (their exact sum), ``"x"`` (a multi-pass step's pass result,
            binary32), ``"psum"`` (the partial sum / accumulator: ``psum`` or ``acc``),
            ``"scale"`` (block scales: ``sa`` moving with ``a``, ``sw`` stationary with
            ``w``).
        stage: which of several same-role registers: the pipeline stage of a scalar
            PE's ``prod{s}``, the pass of a DPU's ``emax``/``aligned``/``sum``/``x``;
            1 for ``psum``, else 0.
        latch: cycle, relative to the item's base cycle, at the end of which it latches
            an item's value (a stationary register: -1, read at the base cycle).
        elem_width: bits of one element; elems: elements (1, or k for vectors).
        stationary: True for a register that holds one value for a whole fold.
        flow: where a moving operand goes next: ``"right"``, ``"down"`` or ``""``
            (not passed on).
        elem_delay: per element, cycles its latch comes after ``latch`` (a stationary
            register: its read after the base cycle); a multi-pass DPU's pass-p
            operands and products: 3p.  () for none.
        bit_fields: ((field, lo, hi), ...), LSB first: the bit fields [lo, hi) of one
            element's encoding: ``"man"``/``"exp"``/``"sign"`` of a floating-point
            value (operands, psum, x; a product's significand is its ``"man"``),
            ``"mag"``/``"sign"`` (/``"exp"``) of an aligned term or a sum, ``"exp"``
            of emax (see :mod:`simulator._array_kernels` for the encodings).
    """

    name: str
    role: str
    stage: int
    latch: int
    elem_width: int
    elems: int = 1
    stationary: bool = False
    flow: str = ""
    elem_delay: tuple = ()
    bit_fields: tuple = ()

    def __post_init__(self):
        if self.role not in REGISTER_ROLES:
            raise ValueError(f"role must be one of {REGISTER_ROLES}, not {self.role!r}")
        if self.flow not in ("right", "down", ""):
            raise ValueError(f"flow must be 'right', 'down' or '', not {self.flow!r}")

    @property
    def width(self) -> int:
        """Register width in bits (all elements)."""
        return self.elem_width * self.elems

    @property
    def operand(self) -> bool:
        """Whether it holds an input operand (role ``a``, ``w`` or ``b``)."""
        return self.role in ("a", "w", "b")

    def delay(self, elem: int) -> int:
        """Cycles element ``elem`` latches (or is read) after ``latch``."""
        return self.elem_delay[elem] if self.elem_delay else 0

    def delays(self) -> tuple:
        """The distinct element delays, ascending."""
        return tuple(sorted(set(self.elem_delay))) if self.elem_delay else (0,)


def reg_code(reg: Register) -> int:
    """The kernels' register code (``REG_*`` of :mod:`simulator._array_kernels`)."""
    if reg.role == "scale":  # A's scales move with a, B's stay with w
        return AK.REG_SW if reg.stationary else AK.REG_SA
    return _ROLE_CODE[reg.role]


def _float_fields(man_bits: int, width: int) -> tuple:
    return (("man", 0, man_bits), ("exp", man_bits, width - 1), ("sign", width - 1, width))


def prod_width(fmt: Format) -> int:
    """Bits of an exact-product register: sign, 10-bit exponent, 2*(man+1)-bit significand."""
    return 1 + AK.EXP_BITS + 2 * (fmt.man_bits + 1)


def fma_registers(dataflow: str, depth: int, fmt: Format, acc: Format) -> tuple:
    """Registers of a scalar-FMA PE (see the module docstring)."""
    opf = _float_fields(fmt.man_bits, fmt.width)
    pf = (("man", 0, 2 * (fmt.man_bits + 1)), ("exp", 2 * (fmt.man_bits + 1), prod_width(fmt) - 1),
          ("sign", prod_width(fmt) - 1, prod_width(fmt)))
    regs = [Register("a", "a", 0, -1, fmt.width, flow="right", bit_fields=opf)]
    if dataflow == "ws":
        regs.append(Register("w", "w", 0, -1, fmt.width, stationary=True, bit_fields=opf))
    else:
        regs.append(Register("b", "b", 0, -1, fmt.width, flow="down", bit_fields=opf))
    for s in range(1, depth):
        regs.append(Register(f"prod{s}", "prod", s, s - 1, prod_width(fmt), bit_fields=pf))
    regs.append(Register("psum" if dataflow == "ws" else "acc", "psum", 1, depth - 1, acc.width,
                         bit_fields=_float_fields(acc.man_bits, acc.width)))
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
    opf = _float_fields(fmt.man_bits, fmt.width)
    pf = (("man", 0, 2 * (fmt.man_bits + 1)), ("exp", 2 * (fmt.man_bits + 1), prod_width(fmt) - 1),
          ("sign", prod_width(fmt) - 1, prod_width(fmt)))
    pass_of, order, start = pass_layout(k, passes)
    n_pass = len(start) - 1
    delay = tuple(int(PASS_CYCLES * q) for q in pass_of) if n_pass > 1 else ()
    regs = [
        Register("a", "a", 0, -1, fmt.width, k, flow="right", elem_delay=delay, bit_fields=opf),
        Register("w", "w", 0, -1, fmt.width, k, stationary=True, elem_delay=delay, bit_fields=opf),
        Register("prod", "prod", 0, 0, prod_width(fmt), k, elem_delay=delay, bit_fields=pf),
    ]
    for q in range(n_pass):
        kp = int(start[q + 1] - start[q])
        carried = c_fused if q == 0 else True
        sfx = str(q) if q else ""
        sw = AK.sum_int_bits(kp, frac_bits, carried)
        o = PASS_CYCLES * q
        regs += [Register(f"emax{sfx}", "emax", q, o + 1, AK.EXP_BITS, bit_fields=(("exp", 0, AK.EXP_BITS),)),
                 Register(f"aligned{sfx}", "aligned", q, o + 1, frac_bits + 3, kp + 1 if carried else kp,
                          bit_fields=(("mag", 0, frac_bits + 2), ("sign", frac_bits + 2, frac_bits + 3))),
                 Register(f"sum{sfx}", "sum", q, o + 2, AK.EXP_BITS + sw,
                          bit_fields=(("mag", 0, sw - 1), ("sign", sw - 1, sw), ("exp", sw, sw + AK.EXP_BITS)))]
        if q < n_pass - 1:
            regs.append(Register(f"x{q + 1}", "x", q + 1, o + 3, 32, bit_fields=_float_fields(23, 32)))
    regs.append(Register("psum", "psum", 1, PASS_CYCLES * n_pass, acc.width,
                         bit_fields=_float_fields(acc.man_bits, acc.width)))
    return tuple(regs)


def general_sum_width(rule, fmt: Format, scale_fmt: Format | None = None) -> int:
    """Bits of the sign-magnitude integer of a fused-tree unit's ``sum`` register for a
    rule (:class:`simulator.StepRule`) on input format ``fmt`` with block scales of
    ``scale_fmt`` (or none): the sum's fraction bits, the magnitude of one term (a
    product: 2 bits above its exponent; a scaled group of ``group_k`` products: enough
    for group_k times the largest product; 2 more for two scales with significands, such
    as UE4M3's, each below 2 above its exponent), one bit per doubling of the term count
    (the terms and C), and the sign."""
    fb = rule.sum_frac_bits if rule.c_mode == "aligned" else rule.frac_bits
    n = -(-rule.k // rule.group_k) + 1
    term = 2 if rule.group_k == 1 else int(np.ceil(np.log2(rule.group_k * fmt.max_finite ** 2)))
    if scale_fmt is not None and scale_fmt.man_bits:
        term += 2
    return fb + term + int(np.ceil(np.log2(n))) + 1


def general_registers(rule, fmt: Format, acc: Format, n_scales: int = 0, scale_fmt: Format | None = None) -> tuple:
    """Registers of a k-wide unit whose step is an issue-13 stage sequence (pairwise tree,
    re-aligned C, parallel passes, scaled groups: see :class:`simulator.StepRule`):

    * ``a``, ``w`` (k operands each); ``sa``, ``sw`` (``n_scales`` block scales each, the
      scale format's 8-bit codes; only for block-scaled GEMMs: element e holds the scale
      of the step's K positions [e*k/n, (e+1)*k/n));
    * ``prod`` (k products, latched at b): a pairwise tree's leaves are binary32
      products; a fused tree's are exact, in the DPU's encoding (:func:`prod_width`);
    * a pairwise tree's levels ``node1`` .. ``node{L}`` (L = log2 k; level l holds
      k / 2**l binary32 partial sums; the first ceil(L/2) levels latch at b+1, the
      others at b+2); a fused tree's ``sum`` (the exact aligned sum, C included
      unless added after, before rounding: a 10-bit exponent and a sign-magnitude
      integer of :func:`general_sum_width` bits, latched at b+2);
    * ``psum``, the step's result (b+3, the timing of a one-pass DPU).
    """
    k = rule.k
    opf = _float_fields(fmt.man_bits, fmt.width)
    f32 = _float_fields(23, 32)
    regs = [Register("a", "a", 0, -1, fmt.width, k, flow="right", bit_fields=opf),
            Register("w", "w", 0, -1, fmt.width, k, stationary=True, bit_fields=opf)]
    if n_scales:
        sf = _float_fields(scale_fmt.man_bits, 8) if scale_fmt.man_bits else (("exp", 0, 8),)
        regs += [Register("sa", "scale", 0, -1, 8, n_scales, flow="right", bit_fields=sf),
                 Register("sw", "scale", 0, -1, 8, n_scales, stationary=True, bit_fields=sf)]
    if rule.tree == "pairwise":
        levels = int(k).bit_length() - 1
        regs.append(Register("prod", "prod", 0, 0, 32, k, bit_fields=f32))
        regs += [Register(f"node{lv}", "x", lv, 1 if lv <= -(-levels // 2) else 2, 32, k >> lv, bit_fields=f32)
                 for lv in range(1, levels + 1)]
    else:
        pw = prod_width(fmt)
        m2 = 2 * (fmt.man_bits + 1)
        regs.append(Register("prod", "prod", 0, 0, pw, k, bit_fields=(("man", 0, m2), ("exp", m2, pw - 1),
                                                                       ("sign", pw - 1, pw))))
        sw = general_sum_width(rule, fmt, scale_fmt if n_scales else None)
        regs.append(Register("sum", "sum", 0, 2, AK.EXP_BITS + sw,
                             bit_fields=(("mag", 0, sw - 1), ("sign", sw - 1, sw), ("exp", sw, sw + AK.EXP_BITS))))
    regs.append(Register("psum", "psum", 1, PASS_CYCLES, acc.width, bit_fields=_float_fields(acc.man_bits, acc.width)))
    return tuple(regs)


DPU_DEPTH = dpu_depth(1)  # a one-pass step: psum latches at b+3, four cycles from the operands
