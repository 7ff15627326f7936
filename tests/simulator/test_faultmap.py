"""Permanent faults (simulator.FaultMap): the kernels under a fault map equal the slow
reference stepper holding the same stuck-at faults for the whole run, for every
register of every PE kind, weight- and output-stationary and on the tensor core."""
import ml_dtypes
import numpy as np
import pytest

import simulator
from simulator import Fault, FaultMap, SystolicArray, TensorCoreArray


def _operands(seed, M, K, N, dtype=np.float16):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    c = rng.standard_normal((M, N)).astype(np.float32)
    return a, b, c


def _bits(x):
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint16)


_ARRAYS = [
    (SystolicArray(3, 4, dataflow="ws"), "fp16", np.float16),
    (SystolicArray(3, 3, dataflow="ws", pipeline_depth=2), "fp16", np.float16),
    (SystolicArray(4, 3, dataflow="os"), "fp16", np.float16),
    (SystolicArray(3, 2, dataflow="os", pipeline_depth=2), "bf16", ml_dtypes.bfloat16),
    (TensorCoreArray(2, 3, profile="hopper"), "fp16", np.float16),
    (TensorCoreArray(2, 2, profile="hopper"), "e4m3", ml_dtypes.float8_e4m3fn),
]


def _cases():
    for arr, fmt, dt in _ARRAYS:
        for name, _ in arr.registers(input_format=fmt):
            yield pytest.param(arr, fmt, dt, name, id=f"{type(arr).__name__}-{arr.dataflow}-{fmt}-{name}")


@pytest.mark.parametrize("arr,fmt,dtype,register", list(_cases()))
def test_fault_map_equals_reference_stepper(arr, fmt, dtype, register):
    """Every register kind: two faulty PEs (the register under test, stuck at a drawn
    bit, plus one more fault elsewhere) in a multi-fold GEMM."""
    shape = (5, 9, 7) if arr.dataflow == "ws" and not isinstance(arr, TensorCoreArray) else (5, 40, 5)
    a, b, c = _operands(7, *shape, dtype)
    width = dict(arr.registers(input_format=fmt))[register]
    seen_change = False
    for seed in range(3):
        rng = np.random.default_rng(seed)
        pe = (int(rng.integers(arr.rows)), int(rng.integers(arr.cols)))
        # high bits (exponent) change results; low bits may be masked
        bit = int(rng.integers(max(0, width - 6), width)) if seed else int(rng.integers(width))
        kind = ("stuck0", "stuck1")[int(rng.integers(2))] if seed < 2 else "stuck1"
        # the second fault: a low accumulator bit (the reference stepper keeps values,
        # not NaN payloads, so two faults on one chain of NaNs could differ there only)
        fm = FaultMap([(pe, register, bit, kind),
                       ((arr.rows - 1, arr.cols - 1), arr.registers(input_format=fmt)[-1][0], 3, "stuck0")])
        fast = arr.run(a, b, c, fault_map=fm)
        slow = arr.run(a, b, c, faults=fm.faults, trace=(register,))
        np.testing.assert_array_equal(_bits(fast.output), _bits(slow.output))
        seen_change |= not np.array_equal(_bits(fast.output), _bits(arr.run(a, b, c).output))
    assert seen_change  # the map reaches D for at least one draw


@pytest.mark.parametrize("arr,fmt,dtype", [(a, f, d) for a, f, d in _ARRAYS if a.rows * a.cols <= 9])
def test_sampled_dense_map_equals_reference_stepper(arr, fmt, dtype):
    """Half the PEs faulty, registers and bits drawn: many faults per fold and row."""
    a, b, c = _operands(3, 6, 11, 7, dtype)
    for seed in range(2):
        fm = FaultMap.sample(arr, rate=0.5, seed=seed, input_format=fmt)
        assert len(fm) == round(0.5 * arr.rows * arr.cols)
        fast = arr.run(a, b, c, fault_map=fm)
        slow = arr.run(a, b, c, faults=fm.faults, trace=("a",))
        np.testing.assert_array_equal(_bits(fast.output), _bits(slow.output))


def test_sample_draws_and_is_reproducible():
    arr = SystolicArray(8, 8)
    fm = FaultMap.sample(arr, rate=0.25, registers=("w", "psum"), bits=(14, 30), kinds="stuck1", seed=5)
    assert len(fm) == 16 and len(fm.pes) == 16  # one fault per faulty PE
    assert {f.register for f in fm} <= {"w", "psum"} and {f.bit for f in fm} <= {14, 30}
    assert all(f.bit == 14 for f in fm if f.register == "w")  # 30 is beyond w's 16 bits
    assert all(f.kind == "stuck1" and f.duration is None and f.cycle == 0 for f in fm)
    assert fm == FaultMap.sample(arr, rate=0.25, registers=("w", "psum"), bits=(14, 30), kinds="stuck1", seed=5)
    assert fm != FaultMap.sample(arr, rate=0.25, registers=("w", "psum"), bits=(14, 30), kinds="stuck1", seed=6)
    assert len(FaultMap.sample(arr, rate=0.0)) == 0 and len(FaultMap.sample(arr, rate=1.0)) == 64
    assert fm.pe_mask(8, 8).sum() == 16
    regs = {f.register for f in FaultMap.sample(SystolicArray(16, 16), rate=1.0, seed=1)}
    assert regs == {"a", "w", "psum"}  # the link registers a (right) and psum (down) included
    # a fault map is a frozen value
    with pytest.raises(AttributeError):
        fm.faults = ()


def test_bad_input_is_refused_with_one_line():
    arr = SystolicArray(4, 4)
    a, b, _ = _operands(0, 3, 5, 4)
    bad = [
        (lambda: FaultMap.sample(arr, rate=1.5), "rate must be in [0, 1], not 1.5"),
        (lambda: FaultMap.sample(arr, rate=-0.1), "rate must be in [0, 1]"),
        (lambda: FaultMap.sample(arr, rate=0.5, registers="emax"), "register must be one of"),
        (lambda: FaultMap.sample(arr, rate=0.5, registers="a", bits=(16,)), "bits must include one in [0, 15]"),
        (lambda: arr.run(a, b, fault_map=FaultMap([((4, 0), "a", 1, "stuck1")])), "pe must be in [0, 4) x [0, 4)"),
        (lambda: arr.run(a, b, fault_map=FaultMap([((0, 0), "sum", 1, "stuck1")])), "register must be one of"),
        (lambda: arr.run(a, b, fault_map=FaultMap([((0, 0), "a", 16, "stuck1")])), "bit..bit+nbits-1 must be in [0, 15]"),
        (lambda: FaultMap([((0, 0), "a", 1, "flip")]), "kind must be one of"),
        (lambda: FaultMap([Fault(pe=(0, 0), register="a", bit=1, cycle=3, kind="stuck1", duration=None)]),
         "cycle 0 for the whole run"),
        (lambda: FaultMap([((0, 0), "psum", 30, "stuck1")]).check(TensorCoreArray(2, 2), "fp16", "fp16"),
         "bit..bit+nbits-1 must be in [0, 15]"),
    ]
    for fn, msg in bad:
        with pytest.raises((ValueError, TypeError)) as e:
            fn()
        assert msg in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(TypeError):
        arr.run(a, b, fault_map=[((0, 0), "a", 1, "stuck1")])


def test_only_faulty_pes_cost_staged_work_and_stuck_w_hits_preload():
    """A stuck weight bit reaches every weight shifted through it (its column, the rows
    below); the other columns of D are the fault-free ones."""
    arr = SystolicArray(4, 4)
    a, b, c = _operands(1, 6, 4, 4)
    gold = arr.run(a, b, c).output
    out = arr.run(a, b, c, fault_map=FaultMap([((1, 2), "w", 14, "stuck1")])).output
    assert np.array_equal(np.delete(out, 2, 1), np.delete(gold, 2, 1))
    bw = b.copy()
    bw[1:, 2] = (bw[1:, 2].view(np.uint16) | np.uint16(1 << 14)).view(np.float16)  # rows 1..3 of column 2
    np.testing.assert_array_equal(_bits(out), _bits(simulator.matmul(a, bw, c, profile="systolic_fma")))
    rows, cols = arr.schedule(6, 9, 10).weight_pes()
    assert list(rows) == [0, 1, 2, 3, 0, 1, 2, 3, 0] and list(cols) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    r2, _ = TensorCoreArray(2, 2).schedule(1, 70, 3).weight_pes()  # hopper fp16: 16 products per step
    assert list(r2[[0, 15, 16, 31, 32, 69]]) == [0, 0, 1, 1, 0, 0]
