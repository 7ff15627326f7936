"""Cycle-level PE arrays: bits against the fast path, cycles against the closed forms."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator
from simulator import SystolicArray, TensorCoreArray

SETTINGS = settings(max_examples=40, deadline=None)


def _bits(x):
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint16)


def _operands(seed, M, K, N, dtype=np.float16, c_dtype=np.float32):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-6, 6, (M, K))
    b = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-6, 6, (K, N))
    a[rng.random((M, K)) < 0.1] = 0.0
    c = (rng.standard_normal((M, N)) * 4).astype(c_dtype)
    return a.astype(dtype), b.astype(dtype), c


def _ws_cycles(R, C, M, K, N, d=1):
    return -(-K // R) * -(-N // C) * (2 * R + C + M - 2 + d - 1)


def _os_cycles(R, C, M, K, N, d=1):
    return -(-M // R) * -(-N // C) * (2 * R + C + K - 2 + d - 1)


@SETTINGS
@given(st.integers(0, 2 ** 31), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40),
       st.integers(1, 9), st.integers(1, 9), st.sampled_from(["ws", "os"]), st.integers(1, 3),
       st.sampled_from([np.float16, ml_dtypes.bfloat16, ml_dtypes.float8_e5m2]))
def test_systolic_matches_fast_path(seed, M, K, N, R, C, dataflow, depth, dtype):
    a, b, c = _operands(seed, M, K, N, dtype)
    arr = SystolicArray(R, C, dataflow, pipeline_depth=depth)
    res = arr.run(a, b, c)
    np.testing.assert_array_equal(_bits(res.output), _bits(simulator.matmul(a, b, c, profile="systolic_fma")))
    want = (_ws_cycles if dataflow == "ws" else _os_cycles)(R, C, M, K, N, depth)
    assert res.cycles == want == arr.cycles(M, K, N)
    assert 0 < res.utilization <= 1


@SETTINGS
@given(st.integers(0, 2 ** 31), st.integers(1, 40), st.integers(1, 70), st.integers(1, 40),
       st.integers(1, 5), st.integers(1, 6),
       st.sampled_from([("hopper", np.float16, np.float32), ("hopper", ml_dtypes.bfloat16, np.float32),
                        ("hopper", np.float16, np.float16), ("hopper_wgmma", ml_dtypes.float8_e4m3fn, np.float32),
                        ("ampere", np.float16, np.float32), ("volta", np.float16, np.float16),
                        ("hopper_wgmma", ml_dtypes.float8_e5m2, np.float32)]))
def test_tensor_core_matches_fast_path(seed, M, K, N, R, C, case):
    profile, dtype, c_dtype = case
    a, b, c = _operands(seed, M, K, N, dtype, c_dtype)
    arr = TensorCoreArray(R, C, profile)
    res = arr.run(a, b, c)
    np.testing.assert_array_equal(_bits(res.output), _bits(simulator.matmul(a, b, c, profile=profile)))
    rule = simulator.get_profile(profile).rule(simulator.matmul.__globals__["input_format_of"](a.dtype).name)
    S = 3 if rule.c_mode == "fused" else 1
    steps = -(-K // rule.k)
    assert res.cycles == -(-steps // R) * -(-N // C) * (R + M + C - 2 + (R - 1) * S + 4)


def test_specials_and_tf32_match_fast_path():
    a, b, c = _operands(1, 9, 21, 7)
    a[0, 3], b[5, 2], a[4, 4] = np.inf, np.nan, -np.inf
    for arr, prof in ((SystolicArray(4, 3), "systolic_fma"), (SystolicArray(3, 4, "os"), "systolic_fma"),
                      (TensorCoreArray(2, 3), "hopper")):
        np.testing.assert_array_equal(_bits(arr.run(a, b, c).output), _bits(simulator.matmul(a, b, c, profile=prof)))
    a32, b32, c = _operands(2, 6, 19, 5, np.float32)
    np.testing.assert_array_equal(_bits(TensorCoreArray(2, 2, "ampere").run(a32, b32, c, input_format="tf32").output),
                                  _bits(simulator.matmul(a32, b32, c, profile="ampere", input_format="tf32")))


@pytest.mark.parametrize("arr", [SystolicArray(3, 4), SystolicArray(4, 3, "os"), SystolicArray(2, 3, "ws", pipeline_depth=3),
                                 SystolicArray(3, 2, "os", pipeline_depth=2), TensorCoreArray(2, 3, "hopper")])
@pytest.mark.parametrize("shape", [(5, 7, 6), (1, 1, 1), (4, 40, 3)])
def test_reference_stepper_counts_same_cycles_and_bits(arr, shape):
    """The slow stepper shuffles registers until the last output drains."""
    a, b, c = _operands(3, *shape)
    reg = arr.registers()[-1][0]
    fast = arr.run(a, b, c)
    slow = arr.run(a, b, c, trace=(reg, "a"))
    np.testing.assert_array_equal(_bits(fast.output), _bits(slow.output))
    assert slow.trace[reg].shape[:3] == (fast.cycles, arr.rows, arr.cols)
    assert fast.cycles == arr.cycles(shape[0], shape[1], shape[2])


def test_scale_sim_examples():
    # SCALE-Sim's formulas for a 32x32 array on 1024^3, checked by hand
    assert SystolicArray(32, 32).cycles(1024, 1024, 1024) == 32 * 32 * (64 + 32 + 1024 - 2)
    assert SystolicArray(32, 32, "os").cycles(1024, 1024, 1024) == 32 * 32 * (64 + 32 + 1024 - 2)
    assert SystolicArray(8, 8, pipeline_depth=3).cycles(16, 16, 16) == 2 * 2 * (16 + 8 + 16 - 2 + 2)


def test_config_validation():
    with pytest.raises(ValueError, match="dataflow must be one of"):
        SystolicArray(4, 4, "xs")
    with pytest.raises(ValueError, match="rows must be in"):
        SystolicArray(0, 4)
    with pytest.raises(TypeError, match="cols must be an int"):
        SystolicArray(4, 4.0)
    with pytest.raises(ValueError, match="scalar-FMA profile"):
        SystolicArray(4, 4, profile="hopper")
    with pytest.raises(ValueError, match="tensor-core profile"):
        TensorCoreArray(4, 4, "systolic_fma")
    with pytest.raises(ValueError, match="pipeline_depth must be"):
        SystolicArray(4, 4, pipeline_depth=0)
    with pytest.raises(ValueError, match="dataflow must be 'ws'"):
        TensorCoreArray(4, 4, dataflow="os")
    arr = SystolicArray(2, 2)
    with pytest.raises(dataclasses_frozen()):
        arr.rows = 3
    a, b, c = _operands(0, 3, 4, 5)
    with pytest.raises(ValueError, match="b must have shape"):
        arr.run(a, b[:3])
    with pytest.raises(TypeError, match="same dtype"):
        arr.run(a, b.astype(np.float32))
    with pytest.raises(ValueError, match="accumulators"):
        arr.run(a, b, c.astype(np.float16))


def dataclasses_frozen():
    import dataclasses
    return dataclasses.FrozenInstanceError


def test_registers_and_fault_sites():
    assert dict(SystolicArray(4, 4).registers()) == {"a": 16, "w": 16, "psum": 32}
    assert dict(SystolicArray(4, 4, "os", pipeline_depth=2).registers("bf16")) == {"a": 16, "b": 16, "prod1": 27, "acc": 32}
    regs = dict(TensorCoreArray(2, 2).registers())
    assert regs == {"a": 256, "w": 256, "prod": 16 * 33, "emax": 10, "aligned": 17 * 28, "sum": 10 + 33, "psum": 32}
    sites = SystolicArray(3, 4).fault_sites(5, 7, 6)
    assert sites.cycles == _ws_cycles(3, 4, 5, 7, 6)
    assert sites.size == (16 + 16 + 32) * 12 * sites.cycles
    assert sites.sample(20, seed=1) == sites.sample(20, seed=1)
    live = sites.live_cycles("psum", (1, 2))
    assert len(live) == 5 * 3  # one live cycle per input row in each of the 3 folds
