"""gemmfi.protection: protection schemes modelled as pipeline stages.

Each scheme is a frozen, validated parameter object (:class:`Parity`, :class:`SecDed`,
:class:`Residue`, :class:`Abft`, :class:`RangeCheck`, :class:`Dmr`) implementing one
interface, :class:`Scheme`: a pure reference computation, the stages and check bits it
adds (which are fault sites), its checker and its action on detection (a new scheme
is one new subclass).  Attach schemes to an array with :class:`ProtectedArray`::

    arr = ProtectedArray(SystolicArray(16, 16), (SecDed(registers=("psum",)),))
    arr.cost(256, 256, 256)            # cycles, latency, register bits vs unprotected
    arr.run(a, b, faults=(...,))       # D after the schemes' actions, and the outcome

Permanent faults (a chip's :class:`simulator.FaultMap`) get mitigations instead
(:class:`Mitigation`: :class:`Unmitigated`, :class:`Bypass`, :class:`Spares`), each
with its cost in cycles and register bits.

Campaigns over these configurations live in :mod:`faults` (``faults.run_campaign``).
"""
from ._codes import SecDedCode, parity, parity_ref, residue, residue_ref, secded_code
from ._evaluate import PROTECTION_OUTCOMES, Evaluator, Judgement, ProtectedResult
from ._layout import ProtectedSites
from ._permanent import MITIGATIONS, Bypass, MitigatedResult, Mitigation, MitigationCost, Spares, Unmitigated
from ._protected import Cost, ProtectedArray
from ._schemes import SCHEMES, Abft, Dmr, Parity, RangeCheck, Residue, Scheme, SecDed, Site, abft_tolerance

__all__ = ["Scheme", "Parity", "SecDed", "Residue", "Abft", "RangeCheck", "Dmr", "SCHEMES", "Site", "abft_tolerance",
           "ProtectedArray", "ProtectedResult", "ProtectedSites", "Cost", "Evaluator", "Judgement",
           "PROTECTION_OUTCOMES",
           "Mitigation", "Unmitigated", "Bypass", "Spares", "MitigatedResult", "MitigationCost", "MITIGATIONS",
           "SecDedCode", "secded_code", "parity", "parity_ref", "residue", "residue_ref"]
