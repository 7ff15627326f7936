"""Protection schemes: validation, stage models against pure references, exhaustive
single/double-bit coverage of the codes, zero false alarms, costs and actions."""
import dataclasses
import itertools

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from faults import Fault, count_false_alarms
from protection import Abft, Dmr, Parity, ProtectedArray, RangeCheck, Residue, SecDed, abft_tolerance
from simulator import SystolicArray, TensorCoreArray


def _gemm(seed, M, K, N, dtype=np.float16, c=False):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    return a, b, (rng.standard_normal((M, N)).astype(np.float32) if c else None)


def _live(parray, g, name, pe, elem=0):
    """One cycle at which element ``elem`` of base register ``name`` of PE ``pe`` is live."""
    plan = g.schedule
    dly = plan.register(name).delay(elem)
    lo, hi = plan.live_ranges(name, pe, dly)[0]
    return (lo + hi) // 2


def test_validation():
    with pytest.raises(TypeError, match="registers must be a non-empty tuple"):
        Parity(registers="psum")
    with pytest.raises(ValueError, match="action must be one of"):
        SecDed(action="fix")
    with pytest.raises(ValueError, match="k must be an int in"):
        Residue(k=1)
    with pytest.raises(ValueError, match="safety must be a number in"):
        Abft(safety=0.5)
    with pytest.raises(ValueError, match="max_exp must be an int"):
        RangeCheck(max_exp=1.5)
    with pytest.raises(TypeError, match="array must be a SystolicArray"):
        ProtectedArray("array", ())
    with pytest.raises(TypeError, match="schemes must hold protection schemes"):
        ProtectedArray(SystolicArray(2, 2), ("parity",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        Parity().action = "recompute"
    arr = ProtectedArray(SystolicArray(2, 2), (Parity(registers=("prod1",)),))
    with pytest.raises(ValueError, match="registers must name registers of the array"):
        arr.cost(4, 4, 4)
    with pytest.raises(ValueError, match="a register must be protected by one code"):
        ProtectedArray(SystolicArray(2, 2), (Parity(), SecDed())).cost(4, 4, 4)
    a, b, _ = _gemm(0, 3, 4, 2)
    parr = ProtectedArray(SystolicArray(2, 2), (SecDed(),))
    with pytest.raises(ValueError, match="kind must be 'flip' for a register under a code"):
        parr.run(a, b, faults=(Fault(pe=(0, 0), register="psum", bit=3, kind="stuck1", duration=None),))
    with pytest.raises(ValueError, match=r"bit..bit\+nbits-1 must be in \[0, 6\]"):
        parr.run(a, b, faults=(Fault(pe=(0, 0), register="psum.ecc", bit=7),))
    with pytest.raises(ValueError, match=r"pe must be \(2, col\)"):
        ProtectedArray(SystolicArray(2, 2), (Dmr(),)).run(a, b, faults=(Fault(pe=(0, 0), register="dmr_flag", bit=0),))


@pytest.mark.parametrize("arr,reg,pe,elem,dtype", [
    (SystolicArray(2, 2), "psum", (1, 0), 0, np.float16),
    (SystolicArray(2, 3, dataflow="os", pipeline_depth=2), "prod1", (1, 2), 0, np.float16),
    (TensorCoreArray(2, 2), "sum", (0, 1), 0, np.float16),
    (TensorCoreArray(2, 2), "a", (1, 1), 5, np.float16),
    (TensorCoreArray(2, 2), "x1", (1, 0), 0, ml_dtypes.float8_e4m3fn),
])
def test_secded_corrects_every_single_and_detects_every_double_bit_fault(arr, reg, pe, elem, dtype):
    """Exhaustive over the bits of one protected word (data and check bits)."""
    a, b, c = _gemm(1, 3, 70, 3, dtype, c=True)
    parr = ProtectedArray(arr, (SecDed(registers=(reg,)),))
    g = arr.golden(a, b, c)
    ev = parr.evaluator(g)
    ew = g.schedule.register(reg).elem_width
    cb = dict(parr.registers(g.fmt.name))[f"{reg}.ecc"] // g.schedule.register(reg).elems
    cycle = _live(parr, g, reg, pe, elem)
    bits = [(reg, elem * ew + j) for j in range(ew)] + [(f"{reg}.ecc", elem * cb + j) for j in range(cb)]
    for name, bit in bits:
        res = ev.evaluate((Fault(pe=pe, register=name, bit=bit, cycle=cycle),))
        assert res.outcome == "corrected" and res.corrected and not res.alarms, (name, bit)
        np.testing.assert_array_equal(res.output.view(np.uint32), g.output.view(np.uint32))
        # the same flip without protection reaches the datapath (or is masked there)
    for (n1, b1), (n2, b2) in itertools.combinations(bits, 2):
        res = ev.evaluate((Fault(pe=pe, register=n1, bit=b1, cycle=cycle), Fault(pe=pe, register=n2, bit=b2, cycle=cycle)))
        assert res.alarms == ("sec-ded",) and res.outcome == "detected", (n1, b1, n2, b2)


@pytest.mark.parametrize("arr,regs", [(SystolicArray(3, 2), ("a", "w", "psum")),
                                      (TensorCoreArray(2, 2), ("prod", "aligned", "sum", "psum"))])
def test_parity_detects_every_single_bit_fault(arr, regs):
    a, b, c = _gemm(2, 4, 40, 3, c=True)
    parr = ProtectedArray(arr, (Parity(registers=regs, action="recompute"),))
    g = arr.golden(a, b, c)
    ev = parr.evaluator(g)
    for reg in regs:
        r = g.schedule.register(reg)
        elems = range(r.elems) if r.elems <= 2 else (0, r.elems // 2, r.elems - 1)
        for e in elems:
            cycle = _live(parr, g, reg, (1, 1), e)
            for bit in [(reg, e * r.elem_width + j) for j in range(r.elem_width)] + [(f"{reg}.par", e)]:
                res = ev.evaluate((Fault(pe=(1, 1), register=bit[0], bit=bit[1], cycle=cycle),))
                assert res.alarms == ("parity",) and res.outcome == "corrected", bit  # recompute restores D


def test_unprotected_flip_is_sdc_and_dead_flip_masked():
    a, b, c = _gemm(3, 4, 8, 3, c=True)
    arr = SystolicArray(2, 2)
    parr = ProtectedArray(arr, (Parity(),))
    g = arr.golden(a, b, c)
    ev = parr.evaluator(g)
    cyc = _live(parr, g, "a", (0, 0))
    assert ev.evaluate((Fault(pe=(0, 0), register="a", bit=14, cycle=cyc),)).outcome == "sdc"
    dead = sorted(set(range(g.cycles)) - {t for lo, hi in g.schedule.live_ranges("psum", (0, 0)) for t in range(lo, hi)})
    assert ev.evaluate((Fault(pe=(0, 0), register="psum", bit=30, cycle=dead[0]),)).outcome == "masked"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(-20, 20), st.sampled_from([np.float32, np.float16]))
def test_range_stage_matches_reference(seed, max_exp, dtype):
    rng = np.random.default_rng(seed)
    d = (rng.standard_normal((7, 9)) * 2.0 ** rng.integers(-30, 30, (7, 9))).astype(dtype)
    d.flat[rng.integers(63)] = np.inf
    d.flat[rng.integers(63)] = np.nan
    s = RangeCheck(max_exp)
    acc = simulator.get_format("fp32" if dtype == np.float32 else "fp16")
    np.testing.assert_array_equal(s.check_bits(d, acc), s.reference(d))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 12), st.integers(1, 40), st.integers(1, 12),
       st.sampled_from(["hopper", "systolic_fma"]), st.integers(0, 4))
def test_abft_stage_matches_reference(seed, M, K, N, profile, n_bad):
    """The streaming checker (binary64 sums in output order) and the pure reference
    (exact fsum) agree on alarms, with and without perturbed outputs."""
    rng = np.random.default_rng(seed)
    a, b, c = _gemm(seed, M, K, N, c=True)
    arr = TensorCoreArray(2, 4) if profile == "hopper" else SystolicArray(2, 4)
    parr = ProtectedArray(arr, (Abft(),))
    g = arr.golden(a, b, c)
    ev = parr.evaluator(g)
    d = g.output.copy()
    for _ in range(n_bad):
        i, j = rng.integers(M), rng.integers(N)
        d[i, j] += np.float32(rng.choice([1e-3, 1.0, 50.0]) * rng.choice([-1, 1]))
    rows, cols = parr.schemes[0]._alarms(ev, d, None, ())
    rho, kappa, tau_row, tau_col, C, nnt = parr.schemes[0]._setup(ev)
    for t in range(nnt):
        r_ref, c_ref = Abft.reference_check(d[:, t * C:(t + 1) * C], rho[:, t], kappa[t * C:(t + 1) * C],
                                            tau_row[:, t], tau_col[t * C:(t + 1) * C])
        np.testing.assert_array_equal(rows[:, t], r_ref)
        np.testing.assert_array_equal(cols[t * C:(t + 1) * C], c_ref)


def test_dmr_reference():
    x = np.array([1.0, np.nan, -0.0], np.float32)
    y = np.array([1.0, np.nan, 0.0], np.float32)
    np.testing.assert_array_equal(Dmr.reference(x, y), [False, False, True])


_DTYPES = {"fp16": np.float16, "bf16": ml_dtypes.bfloat16, "e4m3": ml_dtypes.float8_e4m3fn}


@pytest.mark.parametrize("profile", ["hopper", "systolic_fma"])
@pytest.mark.parametrize("fmt", ["fp16", "bf16", "e4m3"])
def test_no_false_alarms_on_random_gemms(profile, fmt):
    """Every scheme on fault-free random GEMMs of varied shapes and scales (the
    benchmark runs 10,000 per profile and format; here 150)."""
    rng = np.random.default_rng(hash((profile, fmt)) % 2 ** 32)
    arr = TensorCoreArray(4, 4) if profile == "hopper" else SystolicArray(4, 4)
    layer_b = (rng.standard_normal((40, 12)) * 0.5).astype(_DTYPES[fmt])
    gemms = []
    for _ in range(150):
        M, K, N = rng.integers(1, 24), rng.integers(1, 90), rng.integers(1, 20)
        scale = 2.0 ** rng.integers(-8, 8)
        a = (rng.standard_normal((M, K)) * scale * 2.0 ** rng.integers(-3, 3, (M, K))).astype(_DTYPES[fmt])
        b = (rng.standard_normal((K, N)) * 2.0 ** rng.integers(-3, 3, (K, N))).astype(_DTYPES[fmt])
        a[rng.random((M, K)) < 0.2] = 0
        gemms.append((a, b, (rng.standard_normal((M, N)) * scale).astype(np.float32)))
    assert count_false_alarms(ProtectedArray(arr, (SecDed(), Dmr(), Abft())), gemms) == 0
    assert count_false_alarms(ProtectedArray(arr, (Parity(registers=("a", "psum")),)), gemms) == 0
    assert count_false_alarms(ProtectedArray(arr, (Residue(),)), gemms) == 0
    # a range check learned on a layer (fixed weights) does not alarm on fresh inputs
    prof = [simulator.matmul(rng.standard_normal((16, 40)).astype(_DTYPES[fmt]), layer_b, profile=profile)
            for _ in range(30)]
    rc = RangeCheck.profile(prof)
    fresh = [(rng.standard_normal((16, 40)).astype(_DTYPES[fmt]), layer_b, None) for _ in range(100)]
    assert count_false_alarms(ProtectedArray(arr, (rc,)), fresh) == 0


def test_abft_tolerance_bounds_the_error():
    a, b, c = _gemm(5, 20, 200, 20, c=True)
    for prof in ("hopper", "systolic_fma", "ampere"):
        d = simulator.matmul(a, b, c, profile=prof).astype(np.float64)
        exact = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
        rule = simulator.get_profile(prof).rule("fp16")
        tau = abft_tolerance(rule, simulator.get_format("fp16"), simulator.get_format("fp32"), a.astype(np.float64),
                             b.astype(np.float64), c.astype(np.float64))
        assert (np.abs(d - exact) <= tau).all()
        assert np.median(tau / np.maximum(np.abs(exact), 1e-30)) < 1e-3  # still a useful threshold


def test_abft_locates_and_corrects_a_large_single_error_and_actions():
    a, b, c = _gemm(6, 8, 32, 8, c=True)
    arr = SystolicArray(4, 4)
    g = arr.golden(a, b, c)
    # flip the top exponent bit of the bottom psum as output (5, 2) leaves: one output, huge error
    cyc = g.schedule.fold_length * (g.schedule.k_folds - 1) + g.schedule.base_cycle(3, 2) + 5
    f = Fault(pe=(3, 2), register="psum", bit=30, cycle=cyc)
    base = ProtectedArray(arr, ()).run(a, b, c, faults=(f,))
    assert base.outcome == "sdc" and (base.output != g.output).sum() == 1
    res = ProtectedArray(arr, (Abft(),)).run(a, b, c, faults=(f,))
    assert res.outcome == "corrected" and res.alarms == ("abft",) and 0 < res.recompute_cycles < g.cycles
    assert ProtectedArray(arr, (Abft(action="flag"),)).run(a, b, c, faults=(f,)).outcome == "detected"
    rc = RangeCheck.profile([g.output])
    assert ProtectedArray(arr, (rc,)).run(a, b, c, faults=(f,)).outcome == "corrected"
    clamp = ProtectedArray(arr, (dataclasses.replace(rc, action="clamp"),)).run(a, b, c, faults=(f,))
    assert clamp.outcome == "detected" and np.abs(clamp.output).max() < 2.0 ** (rc.max_exp + 1)
    zero = ProtectedArray(arr, (dataclasses.replace(rc, action="zero"),)).run(a, b, c, faults=(f,))
    assert zero.outcome == "detected" and (zero.output == 0).sum() >= 1
    dmr = ProtectedArray(arr, (Dmr(),)).run(a, b, c, faults=(f,))
    assert dmr.outcome == "corrected" and dmr.cycles > ProtectedArray(arr, (Dmr(),)).cycles(8, 32, 8)
    # DMR cannot see a fault in the shared operands
    fa = Fault(pe=(1, 1), register="a", bit=13, cycle=g.schedule.base_cycle(1, 1) - 1 + 3)
    assert ProtectedArray(arr, (Dmr(),)).run(a, b, c, faults=(fa,)).outcome == "sdc"


def test_costs_grow_with_schemes():
    arr = SystolicArray(16, 16)
    base = ProtectedArray(arr, ()).cost(256, 256, 256)
    assert base.added_cycles == 0 and base.cycles == arr.cycles(256, 256, 256)
    folds = 16 * 16
    assert ProtectedArray(arr, (Parity(),)).cost(256, 256, 256).added_cycles == folds
    # SEC-DED's decoder in series with psum: one more cycle per row hop and one at the output
    sd = ProtectedArray(arr, (SecDed(),)).cost(256, 256, 256)
    assert sd.added_cycles == folds * (1 + 16) and sd.added_bits == 256 * (7 + 1)
    assert sd.fold == sd.base_fold + 17 and sd.bits_ratio == 1 + 256 * 8 / (256 * 64)
    dmr = ProtectedArray(arr, (Dmr(),)).cost(256, 256, 256)
    assert dmr.added_bits == 256 * 32 + 16
    regs = dict(ProtectedArray(TensorCoreArray(2, 2), (Residue(k=2),)).registers("e4m3"))
    assert "x1.res" in regs and regs["x1.res"] == 5 and "emax.res" not in regs and "aligned1.res" in regs
    sites = ProtectedArray(arr, (Abft(), Dmr())).fault_sites(32, 32, 32)
    names = {n for n, _, _ in sites.registers}
    assert {"abft_rsum", "abft_cref", "dmr_flag", "dup.psum", "psum", "a", "w"} <= names


@pytest.mark.parametrize("action", ["flag", "recompute"])
def test_secded_burst_labels_follow_the_one_rule(action):
    """2-4-bit bursts in psum: a result that differs from the fault-free one is never
    masked or corrected, and detected only with an alarm and no transient re-run that
    silently failed; a 3-bit burst is miscorrected (SDC) by an extended Hamming code."""
    arr = SystolicArray(4, 4)
    a, b, c = _gemm(3, 6, 40, 5, c=True)
    parr = ProtectedArray(arr, (SecDed(registers=("psum",), action=action),))
    g = arr.golden(a, b, c)
    ev = parr.evaluator(g)
    rng = np.random.default_rng(7)
    seen, mis = set(), 0
    for _ in range(150):
        pe = (int(rng.integers(4)), int(rng.integers(4)))
        live = g.schedule.live_cycles("psum", pe)
        if not len(live):
            continue
        nbits = int(rng.integers(2, 5))
        f = Fault(pe=pe, register="psum", bit=int(rng.integers(0, 33 - nbits)), nbits=nbits,
                  cycle=int(live[rng.integers(len(live))]))
        res = ev.evaluate((f,))
        differs = not np.array_equal(res.output.view(np.uint32), g.output.view(np.uint32))
        seen.add(res.outcome)
        if differs:
            assert res.outcome in ("detected", "sdc"), (f, res.outcome)
        else:
            assert res.outcome in ("masked", "corrected", "detected") and not res.miscorrected, (f, res.outcome)
        if res.outcome == "detected":
            assert res.alarms and not (differs and res.recompute_cycles > 0), f
        if res.miscorrected:
            assert differs and res.outcome == "sdc", f
            mis += 1
    assert mis > 0 and ("detected" in seen or "corrected" in seen), (mis, seen)
