"""Cycle-level PE arrays: bits against the fast path, cycles against the closed forms."""
import zlib

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
    arr = SystolicArray(R, C, dataflow=dataflow, pipeline_depth=depth)
    res = arr.run(a, b, c)
    np.testing.assert_array_equal(_bits(res.output), _bits(simulator.matmul(a, b, c, profile="systolic_fma")))
    want = (_ws_cycles if dataflow == "ws" else _os_cycles)(R, C, M, K, N, depth)
    assert res.cycles == want == arr.cycles(M, K, N)
    assert 0 < res.utilization <= 1


# not a catalogue entry: three passes (k % 3), C fused into the first; holds the DPU to
# the rule's ``passes`` generically, not to hopper's FP8 split
_THREE_PASS_FUSED = simulator.DatapathProfile(
    "three_pass_test", "test only", {"fp16": simulator.StepRule(12, frac_bits=24, passes=(0, 1, 2))})


@SETTINGS
@given(st.integers(0, 2 ** 31), st.integers(1, 40), st.integers(1, 70), st.integers(1, 40),
       st.integers(1, 5), st.integers(1, 6),
       st.sampled_from([("hopper", np.float16, np.float32), ("hopper", ml_dtypes.bfloat16, np.float32),
                        ("hopper", np.float16, np.float16), ("hopper_wgmma", ml_dtypes.float8_e4m3fn, np.float32),
                        ("ampere", np.float16, np.float32), ("volta", np.float16, np.float16),
                        ("hopper_wgmma", ml_dtypes.float8_e5m2, np.float32),
                        ("hopper", ml_dtypes.float8_e4m3fn, np.float32), ("hopper", ml_dtypes.float8_e5m2, np.float32),
                        ("hopper", ml_dtypes.float8_e4m3fn, np.float16), (_THREE_PASS_FUSED, np.float16, np.float32)]))
def test_tensor_core_matches_fast_path(seed, M, K, N, R, C, case):
    profile, dtype, c_dtype = case
    a, b, c = _operands(seed, M, K, N, dtype, c_dtype)
    arr = TensorCoreArray(R, C, profile=profile)
    res = arr.run(a, b, c)
    np.testing.assert_array_equal(_bits(res.output), _bits(simulator.matmul(a, b, c, profile=profile)))
    rule = simulator.get_profile(profile).rule(simulator.matmul.__globals__["input_format_of"](a.dtype).name)
    P = max(rule.passes) + 1
    S = 3 * P if rule.c_mode == "fused" else 1
    steps = -(-K // rule.k)
    assert res.cycles == -(-steps // R) * -(-N // C) * (R + M + C - 2 + (R - 1) * S + 3 * P + 1)


def test_multi_pass_registers_and_cycles():
    arr = TensorCoreArray(4, 3, profile="hopper")
    regs = dict(arr.registers("e4m3"))
    assert list(regs) == ["a", "w", "prod", "emax", "aligned", "sum", "x1", "emax1", "aligned1", "sum1", "psum"]
    assert regs["a"] == 32 * 8 and regs["prod"] == 32 * (1 + 10 + 8)
    assert regs["aligned"] == 16 * 28 and regs["aligned1"] == 17 * 28  # pass 1 carries x1
    assert regs["sum"] == 10 + 28 + 4 and regs["sum1"] == 10 + 28 + 5 and regs["x1"] == 32
    # two passes, C after: depth 3*2 + 1, skew 1
    assert arr.cycles(10, 64, 3, "e4m3") == 1 * 1 * (4 + 10 + 3 - 2 + 3 + 7)
    sites = arr.fault_sites(5, 64, 3, "e4m3")
    assert sites.cycles == 4 + 5 + 3 - 2 + 3 + 7
    # pass 1's registers are live three cycles after pass 0's: item m at PE (r, c) has
    # base cycle R + m + r + c
    r, c = 1, 2
    base = 4 + r + c
    assert sites.live_cycles("emax", (r, c)).tolist() == [base + 1 + m for m in range(5)]
    assert sites.live_cycles("emax1", (r, c)).tolist() == [base + 4 + m for m in range(5)]
    assert sites.live_cycles("x1", (r, c)).tolist() == [base + 3 + m for m in range(5)]
    assert sites.live_cycles("psum", (r, c)).tolist() == [base + 6 + m for m in range(5)]
    assert set(sites.live_cycles("a", (r, c)).tolist()) == {base - 1 + m + d for m in range(5) for d in (0, 3)}


def test_specials_and_tf32_match_fast_path():
    a, b, c = _operands(1, 9, 21, 7)
    a[0, 3], b[5, 2], a[4, 4] = np.inf, np.nan, -np.inf
    for arr, prof in ((SystolicArray(4, 3), "systolic_fma"), (SystolicArray(3, 4, dataflow="os"), "systolic_fma"),
                      (TensorCoreArray(2, 3), "hopper")):
        np.testing.assert_array_equal(_bits(arr.run(a, b, c).output), _bits(simulator.matmul(a, b, c, profile=prof)))
    for dtype in (ml_dtypes.float8_e5m2, ml_dtypes.float8_e4m3fn):  # two passes: specials in either pass
        a8, b8, c8 = _operands(4, 7, 70, 5, dtype)
        a8[0, 2], a8[1, 3], b8[3, 1], b8[34, 4] = np.nan, -np.inf, np.inf, np.inf
        a8[2, 30] = 240.0
        b8[30, :] = 240.0  # a binary32 overflow is not possible, but a large pass-0 term is
        np.testing.assert_array_equal(_bits(TensorCoreArray(3, 2).run(a8, b8, c8).output),
                                      _bits(simulator.matmul(a8, b8, c8)))
    a32, b32, c = _operands(2, 6, 19, 5, np.float32)
    np.testing.assert_array_equal(_bits(TensorCoreArray(2, 2, profile="ampere").run(a32, b32, c, input_format="tf32").output),
                                  _bits(simulator.matmul(a32, b32, c, profile="ampere", input_format="tf32")))


@pytest.mark.parametrize("arr,dtype", [(SystolicArray(3, 4), np.float16), (SystolicArray(4, 3, dataflow="os"), np.float16),
                                       (SystolicArray(2, 3, dataflow="ws", pipeline_depth=3), np.float16),
                                       (SystolicArray(3, 2, dataflow="os", pipeline_depth=2), np.float16),
                                       (TensorCoreArray(2, 3, profile="hopper"), np.float16),
                                       (TensorCoreArray(2, 3, profile="hopper"), ml_dtypes.float8_e4m3fn)])
@pytest.mark.parametrize("shape", [(5, 7, 6), (1, 1, 1), (4, 40, 3)])
def test_reference_stepper_counts_same_cycles_and_bits(arr, dtype, shape):
    """The slow stepper shuffles registers until the last output drains."""
    a, b, c = _operands(3, *shape, dtype)
    reg = arr.registers()[-1][0]
    fast = arr.run(a, b, c)
    slow = arr.run(a, b, c, trace=(reg, "a"))
    np.testing.assert_array_equal(_bits(fast.output), _bits(slow.output))
    assert slow.trace[reg].shape[:3] == (fast.cycles, arr.rows, arr.cols)
    fmt = {np.dtype(np.float16): "fp16", np.dtype(ml_dtypes.float8_e4m3fn): "e4m3"}[np.dtype(dtype)]
    assert fast.cycles == arr.cycles(shape[0], shape[1], shape[2], fmt)


def test_scale_sim_examples():
    # SCALE-Sim's formulas for a 32x32 array on 1024^3, checked by hand
    assert SystolicArray(32, 32).cycles(1024, 1024, 1024) == 32 * 32 * (64 + 32 + 1024 - 2)
    assert SystolicArray(32, 32, dataflow="os").cycles(1024, 1024, 1024) == 32 * 32 * (64 + 32 + 1024 - 2)
    assert SystolicArray(8, 8, pipeline_depth=3).cycles(16, 16, 16) == 2 * 2 * (16 + 8 + 16 - 2 + 2)


def test_config_validation():
    with pytest.raises(ValueError, match="dataflow must be one of"):
        SystolicArray(4, 4, dataflow="xs")
    with pytest.raises(ValueError, match="rows must be in"):
        SystolicArray(0, 4)
    with pytest.raises(TypeError, match="cols must be an int"):
        SystolicArray(4, 4.0)
    with pytest.raises(ValueError, match="scalar-FMA profile"):
        SystolicArray(4, 4, profile="hopper")
    with pytest.raises(ValueError, match="tensor-core profile"):
        TensorCoreArray(4, 4, profile="systolic_fma")
    with pytest.raises(ValueError, match="pipeline_depth must be"):
        SystolicArray(4, 4, pipeline_depth=0)
    with pytest.raises(TypeError, match="dataflow"):
        TensorCoreArray(4, 4, dataflow="os")  # not a parameter: the only dataflow is "ws"
    with pytest.raises(TypeError):
        SystolicArray(4, 4, "ws")  # keyword-only after rows, cols
    with pytest.raises(TypeError):
        TensorCoreArray(4, 4, "hopper")
    assert TensorCoreArray(4, 4).dataflow == "ws"
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
    assert dict(SystolicArray(4, 4, dataflow="os", pipeline_depth=2).registers("bf16")) == {"a": 16, "b": 16, "prod1": 27, "acc": 32}
    regs = dict(TensorCoreArray(2, 2).registers())
    assert regs == {"a": 256, "w": 256, "prod": 16 * 33, "emax": 10, "aligned": 17 * 28, "sum": 10 + 33, "psum": 32}
    sites = SystolicArray(3, 4).fault_sites(5, 7, 6)
    assert sites.cycles == _ws_cycles(3, 4, 5, 7, 6)
    assert sites.size == (16 + 16 + 32) * 12 * sites.cycles
    assert sites.sample(20, seed=1) == sites.sample(20, seed=1)
    live = sites.live_cycles("psum", (1, 2))
    assert len(live) == 5 * 3  # one live cycle per input row in each of the 3 folds


# ---- issue 13: every tensor-core profile on the cycle-level array ---------------------
def _tc_cases():
    """(profile, input format, accumulator dtype) of every dot-product rule."""
    out = []
    for name, prof in simulator.PROFILES.items():
        if all(r.frac_bits is None for r in prof.rules.values()):
            continue
        for key, rule in prof.rules.items():
            if rule.frac_bits is None or "/" in key:
                continue
            for acc in (np.float32, np.float16):
                if ("fp16" if acc == np.float16 else "fp32") in prof.accumulators:
                    out.append((name, key, acc))
    return out


def _random_codes(rng, fmt, shape):
    """Every bit pattern equally likely: zeros, subnormals, infinities and NaNs included."""
    if fmt.name == "tf32":
        return (rng.integers(0, 2 ** 32, shape, dtype=np.uint64).astype(np.uint32)
                & np.uint32(0xFFFFE000)).view(np.float32)
    codes = rng.integers(0, 2 ** fmt.width, shape).astype(fmt.uint_dtype)
    return codes.view(fmt.dtype)


def _tc_operands(rng, profile, key, acc, special):
    fmt = simulator.FORMATS[key]
    rule = simulator.get_profile(profile).rule(key)
    scaled = profile == "blackwell_mx"
    M, N = 3, 5
    K = 128 if scaled else 2 * rule.k + 5  # three K-folds on two rows (a partial last step)
    if special:
        a, b = _random_codes(rng, fmt, (M, K)), _random_codes(rng, fmt, (K, N))
        cf = simulator.FORMATS["fp32" if acc == np.float32 else "fp16"]
        c = rng.integers(0, 2 ** cf.width, (M, N)).astype(cf.uint_dtype).view(acc)
    else:
        x = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-5, 5, (M, K))
        y = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-5, 5, (K, N))
        x[rng.random((M, K)) < 0.15] = 0.0
        if key == "tf32":
            a, b = x.astype(np.float32), y.astype(np.float32)
        else:
            a, b = fmt.encode(x, saturate=True).view(fmt.dtype), fmt.encode(y, saturate=True).view(fmt.dtype)
        c = rng.standard_normal((M, N)).astype(acc)
    kw = {"input_format": "tf32"} if key == "tf32" else {}
    if scaled:
        blk, sf = (16, "ue4m3") if key == "e2m1" else (32, "ue8m0")
        lo, hi = (0x30, 0x40) if sf == "ue4m3" else (120, 134)
        sa = rng.integers(lo, hi, (M, K // blk)).astype(np.uint8)
        sb = rng.integers(lo, hi, (K // blk, N)).astype(np.uint8)
        if special:  # a NaN scale here and there
            sa[0, 0] = 0xFF
        kw.update(scale_a=sa, scale_b=sb, scale_format=sf)
    return a, b, c, kw


@pytest.mark.parametrize("special", [False, True], ids=["random", "special"])
@pytest.mark.parametrize("case", _tc_cases(), ids=lambda x: x if isinstance(x, str) else getattr(x, "__name__", x))
def test_every_tensor_core_profile_matches_fast_path(case, special):
    profile, key, acc = case
    rng = np.random.default_rng(zlib.crc32(f"{profile} {key} {acc.__name__} {special}".encode()))
    a, b, c, kw = _tc_operands(rng, profile, key, acc, special)
    res = TensorCoreArray(2, 3, profile=profile).run(a, b, c, **kw)
    want = simulator.matmul(a, b, c, profile=profile, **kw)
    np.testing.assert_array_equal(_bits(res.output), _bits(want))


def test_issue13_unit_registers():
    arr = TensorCoreArray(2, 3, profile="blackwell_mx")
    # FP4 k64 with a scale per 16 K positions: four scale elements per operand register
    sched = arr.schedule(4, 128, 3, input_format="e2m1", scale_block=16, scale_format="ue4m3")
    regs = {r.name: (r.width, r.elems) for r in sched.registers}
    # exact products of two e2m1 values: sign, 10-bit exponent, 2 x 2 significand bits
    assert {n: regs[n] for n in ("a", "w", "sa", "sw", "prod", "psum")} == {
        "a": (4 * 64, 64), "w": (4 * 64, 64), "sa": (32, 4), "sw": (32, 4), "prod": (15 * 64, 64), "psum": (32, 1)}
    assert list(regs) == ["a", "w", "sa", "sw", "prod", "sum", "psum"] and regs["sum"][1] == 1
    # a pairwise tree of k=4 (CDNA1 fp16): binary32 leaves, then two levels of nodes
    sched = TensorCoreArray(2, 3, profile="cdna1").schedule(2, 8, 3, input_format="fp16")
    assert [(r.name, r.width, r.elems) for r in sched.registers] == [
        ("a", 64, 4), ("w", 64, 4), ("prod", 128, 4), ("node1", 64, 2), ("node2", 32, 1), ("psum", 32, 1)]


def _stage_case(profile, key, seed=3):
    """Operands of one K-fold (PE row r holds step r) on a 2x3 tensor-core array."""
    fmt = simulator.FORMATS[key]
    rule = simulator.get_profile(profile).rule(key)
    M, N, K = 4, 3, 2 * rule.k
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((M, K))
    x[np.abs(x) < 0.05] = 0.5  # nonzero operands: a sign flip of a product changes it
    a = fmt.encode(x, saturate=True).view(fmt.dtype)
    b = fmt.encode(rng.standard_normal((K, N)), saturate=True).view(fmt.dtype)
    c = rng.standard_normal((M, N)).astype(np.float32)
    return fmt, rule, a, b, c


@pytest.mark.parametrize("profile,key", [("cdna3", "fp16"), ("cdna3", "e4m3fnuz"), ("cdna2", "bf16"),
                                         ("cdna1", "fp16")])
def test_product_register_sign_flip_negates_one_operand_of_one_unit(profile, key):
    # a product's sign bit flipped as item m's products latch in unit (r, col) is, for
    # every rule, that column's result with A[m, r*k + t] negated (products are exact or
    # rounded symmetrically, and the operands are nonzero)
    fmt, rule, a, b, c = _stage_case(profile, key)
    arr = TensorCoreArray(2, 3, profile=profile)
    sched = arr.schedule(*a.shape[:1], a.shape[1], b.shape[1], input_format=key)
    reg = sched.register("prod")
    r, col, m, t = 1, 2, 3, rule.k - 1
    fault = simulator.Fault((r, col), "prod", t * reg.elem_width + reg.elem_width - 1,
                            sched.base_cycle(r, col) + reg.latch + m)
    got = arr.run(a, b, c, faults=[fault]).output
    x = fmt.decode(a.view(fmt.uint_dtype))
    x[m, r * rule.k + t] *= -1
    neg = fmt.encode(x).view(fmt.dtype)
    want = simulator.matmul(a, b, c, profile=profile)
    want[:, col] = simulator.matmul(neg, b, c, profile=profile)[:, col]
    assert not np.array_equal(_bits(want), _bits(simulator.matmul(a, b, c, profile=profile)))
    np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("profile,key,reg", [("cdna3", "fp16", "sum"), ("cdna3", "e4m3fnuz", "sum"),
                                             ("cdna2", "bf16", "node2"), ("cdna1", "fp16", "node2")])
def test_sum_or_tree_root_sign_flip_negates_one_step(profile, key, reg):
    # one K step (K = k) and C = +0: the step's result is the rounded sum (fused tree,
    # C included in the sum) or +0 + the tree's root (pairwise); flipping the sign of
    # that sum or root as item m passes negates exactly D[m, col] (rounding to nearest
    # even and adding +0 are symmetric)
    fmt, rule, a, b, c = _stage_case(profile, key, seed=4)
    a = np.ascontiguousarray(a[:, :rule.k])
    b = np.ascontiguousarray(b[:rule.k])
    c = np.zeros_like(c)
    arr = TensorCoreArray(2, 3, profile=profile)
    sched = arr.schedule(a.shape[0], rule.k, b.shape[1], input_format=key)
    register = sched.register(reg)
    r, col, m = 0, 1, 2
    fault = simulator.Fault((r, col), reg, register.width - 1 if reg != "sum" else dict(
        (n, lo) for n, lo, _ in register.bit_fields)["sign"], sched.base_cycle(r, col) + register.latch + m)
    got = arr.run(a, b, c, faults=[fault]).output
    want = simulator.matmul(a, b, c, profile=profile)
    assert want[m, col] != 0
    want[m, col] = -want[m, col]
    np.testing.assert_array_equal(_bits(got), _bits(want))
    # a classic-form rule (zero_exp as data) keeps the full dot-product unit
    assert [n for n, _ in TensorCoreArray(2, 3, profile="blackwell").registers("fp16")] == \
        ["a", "w", "prod", "emax", "aligned", "sum", "psum"]


@pytest.mark.parametrize("key,blk,sf,code", [("e4m3", 32, "ue8m0", 120), ("e2m1", 16, "ue4m3", 0x38)])
@pytest.mark.parametrize("reg", ["sa", "sw"])
def test_scale_register_fault_changes_exactly_the_expected_outputs(key, blk, sf, code, reg):
    fmt = simulator.FORMATS[key]
    rule = simulator.get_profile("blackwell_mx").rule(key)
    R, C, M, N = 2, 3, 4, 3
    K = 2 * rule.k  # one K-fold: PE row r holds step r
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((M, K)), rng.standard_normal((K, N))
    a, b = fmt.encode(x, saturate=True).view(fmt.dtype), fmt.encode(y, saturate=True).view(fmt.dtype)
    sa = np.full((M, K // blk), code, np.uint8)
    sb = np.full((K // blk, N), code, np.uint8)
    c = rng.standard_normal((M, N)).astype(np.float32)
    kw = dict(scale_a=sa, scale_b=sb, scale_format=sf)
    arr = TensorCoreArray(R, C, profile="blackwell_mx")
    sched = arr.schedule(M, K, N, input_format=key, scale_block=blk, scale_format=sf)
    r, col, m, elem, bit = 1, 1, 2, (rule.k // blk) - 1, 0
    q = (r * rule.k) // blk + elem  # the K block the scale element covers
    register = sched.register(reg)
    if reg == "sw":
        # a stuck-at from before the unit's first read: the stationary weight scale of one unit
        cycle = sched.base_cycle(r, col) - 1
        fault = simulator.Fault((r, col), reg, elem * 8 + bit, cycle, kind="stuck1", duration=None)
    else:  # a flip as item m's scale is latched
        fault = simulator.Fault((r, col), reg, elem * 8 + bit, sched.base_cycle(r, col) + register.latch + m)
    got = arr.run(a, b, c, faults=[fault], **kw).output
    golden = simulator.matmul(a, b, c, profile="blackwell_mx", **kw)
    want = golden.copy()
    if reg == "sa":  # A's scale moves right: item m, this unit's column and those after it
        sa2 = sa.copy()
        sa2[m, q] ^= np.uint8(1 << bit)
        for j in range(col, N):
            want[:, j:j + 1] = simulator.matmul(a, b[:, j:j + 1], c[:, j:j + 1], profile="blackwell_mx",
                                                scale_a=sa2, scale_b=sb[:, j:j + 1], scale_format=sf)
    else:  # B's scale is stationary: every item from the fault on, this unit's column
        sb2 = sb.copy()
        sb2[q, col] |= np.uint8(1 << bit)
        want[:, col] = simulator.matmul(a, b, c, profile="blackwell_mx", scale_a=sa, scale_b=sb2,
                                        scale_format=sf)[:, col]
    assert not np.array_equal(_bits(want), _bits(golden))  # the flip matters
    np.testing.assert_array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("profile,key", [("cdna1", "fp16"), ("cdna2", "bf16")])
def test_tree_level_sign_flip_negates_a_pair_of_leaves(profile, key):
    # node1 element q is leaf 2q + leaf 2q+1: its sign flipped as item m passes is, for
    # that unit's column, A[m, kb + 2q] and A[m, kb + 2q + 1] both negated
    fmt, rule, a, b, c = _stage_case(profile, key, seed=5)
    arr = TensorCoreArray(2, 3, profile=profile)
    sched = arr.schedule(a.shape[0], a.shape[1], b.shape[1], input_format=key)
    reg = sched.register("node1")
    r, col, m, q = 1, 0, 1, 1
    fault = simulator.Fault((r, col), "node1", q * 32 + 31, sched.base_cycle(r, col) + reg.latch + m)
    got = arr.run(a, b, c, faults=[fault]).output
    x = fmt.decode(a.view(fmt.uint_dtype))
    x[m, r * rule.k + 2 * q:r * rule.k + 2 * q + 2] *= -1
    want = simulator.matmul(a, b, c, profile=profile)
    want[:, col] = simulator.matmul(fmt.encode(x).view(fmt.dtype), b, c, profile=profile)[:, col]
    assert not np.array_equal(_bits(want), _bits(simulator.matmul(a, b, c, profile=profile)))
    np.testing.assert_array_equal(_bits(got), _bits(want))
