"""simulator.chip_gemm: a GEMM on a faulty chip with cycle-level work only where its
faults reach gives the bits of ``array.run(..., fault_map=...)``, for every register
kind, weight- and output-stationary and on the tensor-core array."""
import zlib

import ml_dtypes
import numpy as np
import pytest

import simulator
from simulator import FaultMap, SystolicArray, TensorCoreArray, chip_gemm, matmul

_ARRAYS = [
    (SystolicArray(4, 5, dataflow="ws"), "fp16", np.float16),
    (SystolicArray(3, 4, dataflow="ws", pipeline_depth=3), "fp16", np.float16),
    (SystolicArray(4, 3, dataflow="ws"), "bf16", ml_dtypes.bfloat16),
    (SystolicArray(4, 4, dataflow="ws"), "e4m3", ml_dtypes.float8_e4m3fn),
    (SystolicArray(4, 3, dataflow="ws"), "tf32", np.float32),
    (SystolicArray(4, 3, dataflow="os"), "fp16", np.float16),
    (SystolicArray(3, 2, dataflow="os", pipeline_depth=2), "bf16", ml_dtypes.bfloat16),
    (TensorCoreArray(2, 3, profile="hopper"), "fp16", np.float16),
    (TensorCoreArray(2, 2, profile="hopper"), "e4m3", ml_dtypes.float8_e4m3fn),
]


def _bits(x):
    return x.view({4: np.uint32, 2: np.uint16}[x.dtype.itemsize])


def _cases():
    for arr, fmt, dt in _ARRAYS:
        for name, _ in arr.registers(input_format=fmt):
            yield pytest.param(arr, fmt, dt, name, id=f"{type(arr).__name__}-{arr.dataflow}-{fmt}-{name}")


@pytest.mark.parametrize("arr,fmt,dtype,register", list(_cases()))
def test_chip_gemm_equals_the_cycle_level_run(arr, fmt, dtype, register):
    """Random GEMMs (several N-tiles and K-folds, ragged edges, an inf in A now and
    then), several faulty PEs: the register under test alone, then mixed with every
    other register; with and without C, with and without the golden D given."""
    rng = np.random.default_rng(zlib.crc32(f"{arr}-{fmt}-{register}".encode()))
    inf_fmt = "tf32" if fmt == "tf32" else None
    kmax = 2 * arr.rows * arr.schedule(1, 1, 1, input_format=fmt).step + 2  # up to three K-folds
    changed = 0
    for trial in range(8):
        M, K, N = (int(rng.integers(1, 9)), int(rng.integers(1, kmax)), int(rng.integers(1, 3 * arr.cols + 2)))
        a = (rng.standard_normal((M, K)) * 2).astype(dtype)
        b = rng.standard_normal((K, N)).astype(dtype)
        if trial % 4 == 3:
            a[0, int(rng.integers(K))] = np.inf
        c = rng.standard_normal((M, N)).astype(np.float32) if trial % 2 else None
        fm = FaultMap.sample(arr, rate=float(rng.uniform(0.1, 0.6)), seed=trial, input_format=fmt,
                             registers=register if trial < 4 else None)
        ref = arr.run(a, b, c, fault_map=fm, input_format=inf_fmt).output
        gold = matmul(a, b, c, profile=arr.profile, input_format=inf_fmt)
        got = chip_gemm(arr, a, b, c, fault_map=fm, input_format=inf_fmt, golden=gold if trial % 3 else None)
        np.testing.assert_array_equal(_bits(got), _bits(ref))
        changed += not np.array_equal(_bits(ref), _bits(gold))
    assert changed  # the faults did something


def test_chip_gemm_stuck_partial_sums_through_nan():
    """High partial-sum bits stuck at 1 drive sums to inf and NaN; stuck bits on a NaN
    that could turn it into a number (an exponent bit stuck at 0) go to the kernel."""
    arr = SystolicArray(4, 4)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 23)).astype(np.float16)
    b = rng.standard_normal((23, 9)).astype(np.float16)
    for fm in (FaultMap([((0, 1), "psum", 30, "stuck1"), ((2, 1), "psum", 29, "stuck1")]),
               FaultMap([((0, 1), "psum", 30, "stuck1"), ((1, 1), "a", 14, "stuck1"), ((3, 1), "psum", 26, "stuck0"),
                         ((2, 2), "w", 14, "stuck1"), ((1, 2), "psum", 23, "stuck0"), ((3, 3), "psum", 22, "stuck0")])):
        ref = arr.run(a, b, fault_map=fm).output
        assert np.isnan(ref).any() or np.isinf(ref).any()
        np.testing.assert_array_equal(_bits(chip_gemm(arr, a, b, fault_map=fm)), _bits(ref))


def test_stuck_partial_sum_on_a_nan_acts_on_the_canonical_quiet_nan():
    """A partial-sum register that receives a NaN holds the one quiet NaN 0x7FC00000
    (the scalar-FMA profile's NaN), whatever sign the host's arithmetic gave it
    (x86: inf - inf is negative; a NaN operand keeps its sign): a stuck bit on it gives
    the same number on every row, and chip_gemm, the kernel and the slow reference
    stepper agree bit for bit.  Column 2 is one FMA chain down K = 4: the stuck bit
    at PE (1, 2) acts after the second MAC; b is all ones, so D[m, 2] is the faulty
    partial sum + a[m, 2] + a[m, 3], exactly."""
    assert simulator.PROFILES["systolic_fma"].nan_fp32 == 0x7FC00000
    arr = SystolicArray(4, 4)
    neg_nan, pos_nan = np.uint16(0xFE00).view(np.float16), np.uint16(0x7E00).view(np.float16)
    a = np.array([[np.inf, -np.inf, 2, 3],      # inf - inf at PE row 1: the host's NaN (x86: negative)
                  [-np.inf, np.inf, 2, 3],
                  [neg_nan, 1, 2, 3],           # a negative NaN operand at row 0
                  [pos_nan, 1, 2, 3],
                  [1, 1, 2, 3]], np.float16)    # no NaN: 2.0 = 0x40000000 there
    b = np.ones((4, 4), np.float16)
    # (bit, kind) -> D[:, 2] expected from the bit patterns by hand
    nan_to = {(30, "stuck0"): 1.5 + 5,           # 0x3FC00000 = 1.5; 2.0 -> 0x00000000 = 0
              (22, "stuck0"): np.inf,            # 0x7F800000: the quiet bit cleared is inf
              (31, "stuck1"): np.nan}            # 0xFFC00000: still a NaN
    plain = {(30, "stuck0"): 0.0 + 5, (22, "stuck0"): 2.0 + 5, (31, "stuck1"): -2.0 + 5}
    for (bit, kind), want in nan_to.items():
        fm = FaultMap([((1, 2), "psum", bit, kind)])
        got = chip_gemm(arr, a, b, fault_map=fm)
        run = arr.run(a, b, fault_map=fm).output
        slow = arr.run(a, b, faults=fm.faults, trace=("psum",)).output
        np.testing.assert_array_equal(_bits(got), _bits(run))
        np.testing.assert_array_equal(_bits(got), _bits(slow))
        np.testing.assert_array_equal(got[:4, 2], np.full(4, want, np.float32))
        assert got[4, 2] == plain[(bit, kind)]
        if np.isnan(want):  # D holds the profile's NaN
            assert (_bits(got[:4, 2]) == 0x7FC00000).all()


def test_chip_gemm_stuck_partial_sum_on_an_idle_row_gives_the_profile_nan():
    """K = 3 on 4 PE rows: row 3 only passes the partial sum on, and a stuck high bit
    there turns it into a NaN after the last MAC; D holds the profile's NaN encoding."""
    arr = SystolicArray(4, 5)
    a = np.array([[1.746, 1.569, -0.4377]], np.float16)
    b = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float16)
    fm = FaultMap([((3, 3), "psum", 30, "stuck1")])
    ref = arr.run(a, b, fault_map=fm).output
    got = chip_gemm(arr, a, b, fault_map=fm)
    np.testing.assert_array_equal(_bits(got), _bits(ref))


def test_chip_gemm_leaves_unreached_columns_fault_free():
    """A stuck partial sum reaches its own column only; a stuck ``a`` the columns to
    its right (in every N-tile): the other columns are the golden D."""
    arr = SystolicArray(4, 4)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 10)).astype(np.float16)
    b = rng.standard_normal((10, 8)).astype(np.float16)
    gold = matmul(a, b, profile="systolic_fma")
    d = chip_gemm(arr, a, b, fault_map=FaultMap([((1, 2), "psum", 30, "stuck1")]))
    assert not np.array_equal(d[:, [2, 6]], gold[:, [2, 6]])
    np.testing.assert_array_equal(np.delete(d, [2, 6], axis=1), np.delete(gold, [2, 6], axis=1))
    d = chip_gemm(arr, a, b, fault_map=FaultMap([((1, 2), "a", 14, "stuck1")]))
    np.testing.assert_array_equal(d[:, [0, 1, 4, 5]], gold[:, [0, 1, 4, 5]])
    assert not np.array_equal(d[:, [2, 3, 6, 7]], gold[:, [2, 3, 6, 7]])


def test_chip_gemm_refuses_bad_input_with_one_line():
    arr = SystolicArray(4, 4)
    a = np.ones((3, 5), np.float16)
    b = np.ones((5, 4), np.float16)
    bad = [
        (lambda: chip_gemm(arr, a, b, fault_map=[((0, 0), "a", 1, "stuck1")]), TypeError, "fault_map must be a FaultMap"),
        (lambda: chip_gemm("array", a, b, fault_map=FaultMap(())), TypeError, "array must be a SystolicArray"),
        (lambda: chip_gemm(arr, a, b, fault_map=FaultMap([((4, 0), "a", 1, "stuck1")])), ValueError,
         "pe must be in [0, 4) x [0, 4)"),
        (lambda: chip_gemm(arr, a, b, fault_map=FaultMap([((0, 0), "sum", 1, "stuck1")])), ValueError,
         "register must be one of"),
        (lambda: chip_gemm(arr, a, b, fault_map=FaultMap([((0, 0), "a", 16, "stuck1")])), ValueError,
         "bit..bit+nbits-1 must be in [0, 15]"),
        (lambda: chip_gemm(arr, a, b, fault_map=FaultMap([((0, 0), "a", 1, "stuck1")]),
                           golden=np.zeros((3, 3), np.float32)), ValueError, "golden must be the fault-free D"),
    ]
    for fn, exc, msg in bad:
        with pytest.raises(exc) as e:
            fn()
        assert msg in str(e.value) and "\n" not in str(e.value), str(e.value)
