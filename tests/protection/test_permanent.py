"""Mitigations for permanent faults (protection.Bypass, Spares, Unmitigated): results
held to independent constructions, outcome labels, costs."""
import numpy as np
import pytest

import simulator
from protection import PROTECTION_OUTCOMES, Bypass, MitigationCost, Spares, Unmitigated
from simulator import FaultMap, SystolicArray, TensorCoreArray


def _operands(seed, M, K, N):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((M, K)).astype(np.float16), rng.standard_normal((K, N)).astype(np.float16),
            rng.standard_normal((M, N)).astype(np.float32))


def _same(x, y):
    return np.array_equal(x.view(np.uint32), y.view(np.uint32))


@pytest.mark.parametrize("arr,prof", [(SystolicArray(4, 4), "systolic_fma"),
                                      (TensorCoreArray(2, 2, profile="hopper"), "hopper")])
def test_bypass_zeroes_the_weights_on_faulty_pes(arr, prof):
    a, b, c = _operands(0, 6, 40, 7)
    fm = FaultMap([((1, 1), "a", 14, "stuck1"), ((0, 0), "psum", 30, "stuck1")])
    r = Bypass().run(arr, a, b, c, fault_map=fm)
    step = 1 if prof == "systolic_fma" else 16
    bz, hand = b.copy(), np.zeros((40, 7), bool)
    for k in range(40):  # by hand: B[k, n] on PE ((k // step) % rows, n % cols)
        for n in range(7):
            hand[k, n] = ((k // step) % arr.rows, n % arr.cols) in fm.pes
    bz[hand] = 0
    assert _same(r.output, simulator.matmul(a, bz, c, profile=prof))
    assert np.array_equal(fm.weight_mask(arr, 40, 7), hand)
    assert r.outcome == "detected" and r.acted  # differs from fault-free: never "corrected"
    assert r.cycles == arr.cycles(6, 40, 7)
    cost = Bypass().cost(arr, 6, 40, 7, fm)
    assert isinstance(cost, MitigationCost) and cost.added_cycles == 0 and cost.added_bits == arr.rows * arr.cols
    # the unmitigated chip differs from both
    u = Unmitigated().run(arr, a, b, c, fault_map=fm)
    assert u.outcome == "sdc" and not _same(u.output, r.output)


def test_bypass_output_stationary_leaves_c():
    arr = SystolicArray(3, 3, dataflow="os")
    a, b, c = _operands(1, 5, 6, 4)
    fm = FaultMap([((1, 0), "acc", 30, "stuck1")])
    out = Bypass().run(arr, a, b, c, fault_map=fm).output
    gold = simulator.matmul(a, b, c, profile="systolic_fma")
    hit = np.zeros((5, 4), bool)
    hit[[1, 4], 0] = hit[[1, 4], 3] = True  # rows 1, 4 (mod 3) x cols 0, 3 (mod 3)
    assert _same(out[hit], c[hit]) and _same(out[~hit], gold[~hit])


def test_spares_restore_the_result_and_cost_cycles_and_bits():
    arr = SystolicArray(4, 4)
    a, b, c = _operands(2, 6, 9, 10)  # 3 K-folds x 3 N-tiles (cols used 4, 4, 2)
    gold = simulator.matmul(a, b, c, profile="systolic_fma")
    fm = FaultMap([((1, 2), "a", 14, "stuck1"), ((3, 2), "psum", 30, "stuck0"), ((0, 3), "w", 14, "stuck1")])
    r = Spares(2).run(arr, a, b, c, fault_map=fm)  # columns 2 and 3 moved to spares 0 and 1
    assert _same(r.output, gold) and r.outcome == "corrected" and r.acted
    base = arr.cycles(6, 9, 10)
    # folds of N-tiles 0, 1 use column 3 -> spare 1 (+2); N-tile 2 uses cols 0, 1 only
    assert r.cycles == base + 6 * 2
    cost = Spares(2).cost(arr, 6, 9, 10, fm)
    pe_bits = 16 + 16 + 32
    assert cost.added_cycles == 12 and cost.added_bits == 2 * 4 * pe_bits + 4
    assert cost.base_bits == 16 * pe_bits
    # one spare: column 3 stays faulty, column 2 is fixed
    r1 = Spares(1).run(arr, a, b, c, fault_map=fm)
    only3 = arr.run(a, b, c, fault_map=fm.select(lambda f: f.pe[1] == 3)).output
    assert _same(r1.output[:, [0, 1, 2, 4, 5, 6, 8, 9]], gold[:, [0, 1, 2, 4, 5, 6, 8, 9]])
    assert _same(r1.output[:, [3, 7]], only3[:, [3, 7]]) and r1.outcome == "detected"
    # a map the GEMM never meets: masked
    r0 = Spares(1).run(arr, a[:, :2], b[:2, :2], c[:, :2], fault_map=FaultMap([((3, 3), "w", 3, "stuck1")]))
    assert r0.outcome == "masked" and not r0.acted
    assert set(PROTECTION_OUTCOMES) >= {r.outcome, r1.outcome, r0.outcome}
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        Spares(0)
    with pytest.raises(TypeError, match="fault_map must be a FaultMap"):
        Bypass().run(arr, a, b, c, fault_map=[((0, 0), "a", 1, "stuck1")])
