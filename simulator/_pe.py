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

Dot-product unit (tensor core), k products per step:
    ``a``, ``w`` (k operands each), ``prod`` (k exact products, latched b),
    ``emax`` and ``aligned`` (exponent compare and alignment, latched b+1),
    ``sum`` (exact sum with its exponent, b+2), ``psum`` (rounded result, b+3).
    C is read by the alignment stage (c_mode "fused", cycle b+1) or by the final
    add (c_mode "after", cycle b+3), so the partial sum moves one row every
    S = 3 or S = 1 cycles.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import _array_kernels as AK
from ._formats import Format


@dataclass(frozen=True)
class Register:
    """One named pipeline register of a PE.

    Attributes:
        name: the fault-site name.
        code: register code used by the kernels (``REG_*`` in ``_array_kernels``).
        stage: which of several same-code registers (prod stage s), else 0.
        latch: latch cycle relative to the item's base cycle (moving registers).
        elem_width: bits of one element; elems: elements (1, or k for vectors).
        stationary: True for a register that holds one value for a whole fold.
        flows: direction a moving operand is passed to the next PE: "right",
            "down" or "" (not passed on).
    """

    name: str
    code: int
    stage: int
    latch: int
    elem_width: int
    elems: int = 1
    stationary: bool = False
    flows: str = ""

    @property
    def width(self) -> int:
        """Register width in bits."""
        return self.elem_width * self.elems


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


def dpu_registers(k: int, frac_bits: int, c_fused: bool, fmt: Format, acc: Format) -> tuple:
    """Registers of a k-wide dot-product unit (see the module docstring)."""
    sw = AK.sum_int_bits(k, frac_bits, c_fused)
    return (
        Register("a", AK.REG_A, 0, -1, fmt.width, k, flows="right"),
        Register("w", AK.REG_W, 0, -1, fmt.width, k, stationary=True),
        Register("prod", AK.REG_PROD, 0, 0, prod_width(fmt), k),
        Register("emax", AK.REG_EMAX, 0, 1, AK.EXP_BITS),
        Register("aligned", AK.REG_ALIGNED, 0, 1, frac_bits + 3, k + 1 if c_fused else k),
        Register("sum", AK.REG_SUM, 0, 2, AK.EXP_BITS + sw),
        Register("psum", AK.REG_PSUM, 1, 3, acc.width),
    )


DPU_PSUM_READ = {True: 1, False: 3}  # cycle (after b) the DPU reads C: fused / after
DPU_DEPTH = 4  # psum latches at b+3: four cycles from the multiply to the result
