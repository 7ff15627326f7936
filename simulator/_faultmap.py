"""Permanent faults: a chip's fault map.

A :class:`FaultMap` is the set of permanent (stuck-at) faults of one chip: per
faulty PE, a register, a bit (or a burst of adjacent bits) and whether it is stuck
at 0 or at 1.  It is held as :class:`simulator.Fault` values of kind ``"stuck0"`` /
``"stuck1"`` from cycle 0 with ``duration=None``, so an array given the map
(``array.run(a, b, c, fault_map=fm)``) meets every fault in every fold, at every
cycle, preload and drain included: exactly what the slow reference stepper does
with the same faults held for the whole run.  The kernels run the staged
(register-as-bits) path only for the PEs and items an event touches; every other
PE of the GEMM stays on the fault-free path.

The registers are the PE's named pipeline registers (:meth:`Schedule.registers`),
and they include the ones that drive the links between PEs: ``a`` (the operand a
PE forwards to its right neighbour), ``psum``/``acc`` (the partial sum it forwards
down) and, output-stationary, ``b`` (the operand forwarded down); a stuck bit there
reaches every PE downstream of the link.  A stuck bit in a weight-stationary ``w``
also hits every weight that is shifted through it during the preload (the weights
of the PEs below it in its column).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._fault import Fault

__all__ = ["FaultMap", "STUCK_KINDS"]

#: Kinds of permanent fault.
STUCK_KINDS = ("stuck0", "stuck1")


def _as_fault(x) -> Fault:
    if isinstance(x, Fault):
        f = x
    elif isinstance(x, tuple) and 4 <= len(x) <= 5:
        pe, register, bit, kind = x[:4]
        f = Fault(pe=pe, register=register, bit=bit, cycle=0, kind=kind, nbits=x[4] if len(x) == 5 else 1,
                  duration=None if kind in STUCK_KINDS else 1)
    else:
        raise TypeError(f"faults must hold Fault values or (pe, register, bit, kind[, nbits]) tuples, not {x!r}")
    if f.kind not in STUCK_KINDS:
        raise ValueError(f"kind must be one of {STUCK_KINDS} in a fault map, not {f.kind!r}")
    if f.cycle != 0 or f.duration is not None:
        raise ValueError(f"a fault map's faults must hold from cycle 0 for the whole run (cycle=0, duration=None), "
                         f"not cycle={f.cycle}, duration={f.duration}")
    return f


def _check_rate(rate) -> float:
    if not isinstance(rate, (int, float, np.integer, np.floating)) or isinstance(rate, bool):
        raise TypeError(f"rate must be a number, not {type(rate).__name__}")
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"rate must be in [0, 1], not {rate}")
    return float(rate)


@dataclass(frozen=True)
class FaultMap:
    """The permanent faults of one chip (frozen, validated).

    Build by hand, ``FaultMap([((1, 2), "w", 14, "stuck1"), ((0, 5), "psum", 30, "stuck0", 2)])``
    (entries: :class:`simulator.Fault` values of kind stuck0/stuck1 from cycle 0 with
    ``duration=None``, or ``(pe, register, bit, kind[, nbits])`` tuples), or draw one
    with :meth:`sample`.  Whether each PE, register and bit exists is checked
    against the array and formats that run it (:meth:`check`, and every
    ``array.run(..., fault_map=...)``), with a one-line ValueError.

    Attributes:
        faults: the faults (:class:`simulator.Fault`), in the order they act (two
            faults on one register bit: the later one wins).
    """

    faults: tuple = ()

    def __post_init__(self):
        if isinstance(self.faults, (str, bytes)) or not hasattr(self.faults, "__iter__"):
            raise TypeError(f"faults must be a sequence of faults, not {type(self.faults).__name__}")
        object.__setattr__(self, "faults", tuple(_as_fault(f) for f in self.faults))

    def __len__(self) -> int:
        return len(self.faults)

    def __iter__(self):
        return iter(self.faults)

    @property
    def pes(self) -> tuple:
        """The faulty PEs, ((row, col), ...), sorted."""
        return tuple(sorted({f.pe for f in self.faults}))

    @property
    def columns(self) -> tuple:
        """The PE columns holding a faulty PE, sorted."""
        return tuple(sorted({f.pe[1] for f in self.faults}))

    def pe_mask(self, rows: int, cols: int) -> np.ndarray:
        """(rows, cols) bool: True at the faulty PEs (ValueError for a PE outside)."""
        m = np.zeros((rows, cols), np.bool_)
        for r, c in self.pes:
            if r >= rows or c >= cols:
                raise ValueError(f"pe must be in [0, {rows}) x [0, {cols}), not {(r, c)}")
            m[r, c] = True
        return m

    def weight_mask(self, array, k: int, n: int, *, input_format: str | None = None) -> np.ndarray:
        """Weight-stationary: (k, n) bool, True where element (kk, nn) of a (k x n) B
        is held by a faulty PE (:meth:`Schedule.weight_pes`: PE ((kk // step) % rows,
        nn % cols) in every fold).  What fault-aware pruning zeroes."""
        rows, cols = array.schedule(1, k, n, input_format=input_format).weight_pes()
        return self.pe_mask(array.rows, array.cols)[rows[:, None], cols[None, :]]

    def select(self, keep) -> "FaultMap":
        """The map of the faults for which ``keep(fault)`` is true."""
        return FaultMap(tuple(f for f in self.faults if keep(f)))

    def check(self, array, input_format: str = "fp16", accumulator: str = "fp32") -> "FaultMap":
        """Check every fault against ``array`` (its PEs, its registers for these formats
        and their widths); returns the map.  ValueError (one line) for the first bad one."""
        array._check_faults(array.schedule(1, 1, 1, input_format=input_format, accumulator=accumulator),
                            self.faults)
        return self

    @classmethod
    def sample(cls, array, *, rate, registers=None, bits=None, kinds=STUCK_KINDS, nbits: int = 1, seed: int = 0,
               input_format: str = "fp16", accumulator: str = "fp32") -> "FaultMap":
        """Draw a chip: ``round(rate * rows * cols)`` faulty PEs, one stuck-at fault each.

        Drawn uniformly (one generator seeded with ``seed``): the set of faulty PEs
        (without replacement, every PE equally likely); per faulty PE, its register
        (uniform over ``registers``), its lowest bit (uniform over the bits of that
        register that can start an ``nbits`` burst, or over those of ``bits``) and its kind
        (uniform over ``kinds``).  Fixed: the count (from ``rate``), ``nbits``, one
        fault per faulty PE, and that every fault holds for the whole run.

        Args:
            array: a :class:`SystolicArray` or :class:`TensorCoreArray`.
            rate: fraction of faulty PEs, in [0, 1].
            registers: register name or names to draw from (default: every register
                of the PE for these formats, ``array.registers(...)``).
            bits: bit positions to draw from (those that fit the drawn register;
                default: all of the register's).
            kinds: ``("stuck0", "stuck1")`` or one of them.
            nbits: adjacent bits per fault.
            seed: the generator's seed.
            input_format, accumulator: the formats whose register widths apply.
        """
        rate = _check_rate(rate)
        widths = dict(array.registers(input_format=input_format, accumulator=accumulator))
        if registers is None:
            registers = tuple(widths)
        elif isinstance(registers, str):
            registers = (registers,)
        registers = tuple(registers)
        if not registers:
            raise ValueError("registers must name at least one register, not none")
        for reg in registers:
            if reg not in widths:
                raise ValueError(f"register must be one of {sorted(widths)} for {input_format}/{accumulator}, "
                                 f"not {reg!r}")
        if isinstance(kinds, str):
            kinds = (kinds,)
        for k in kinds:
            if k not in STUCK_KINDS:
                raise ValueError(f"kinds must be drawn from {STUCK_KINDS}, not {k!r}")
        if not isinstance(nbits, int) or isinstance(nbits, bool) or nbits < 1:
            raise ValueError(f"nbits must be an int >= 1, not {nbits!r}")
        allowed = {}
        if bits is not None:
            bits = tuple(int(b) for b in bits)
            if not bits:
                raise ValueError("bits must hold at least one bit position, not none")
            for reg in registers:
                allowed[reg] = tuple(b for b in bits if 0 <= b and b + nbits <= widths[reg])
                if not allowed[reg]:
                    raise ValueError(f"bits must include one in [0, {widths[reg] - nbits}] for register {reg!r}, "
                                     f"not only {bits}")
        for reg in registers:
            if nbits > widths[reg]:
                raise ValueError(f"nbits must be <= {widths[reg]} for register {reg!r}, not {nbits}")
        R, C = array.rows, array.cols
        n = int(round(rate * R * C))
        rng = np.random.default_rng(seed)
        flat = np.sort(rng.choice(R * C, size=n, replace=False))
        faults = []
        for p in flat:
            reg = registers[int(rng.integers(len(registers)))]
            bit = allowed[reg][int(rng.integers(len(allowed[reg])))] if bits is not None else int(
                rng.integers(widths[reg] - nbits + 1))
            kind = kinds[int(rng.integers(len(kinds)))]
            faults.append(Fault(pe=(int(p) // C, int(p) % C), register=reg, bit=bit, cycle=0, kind=kind,
                                nbits=nbits, duration=None))
        return cls(tuple(faults))
