"""Register-level and result-level faults: validation, masking, effect, determinism,
and the analytic kernels against the register-shuffling reference stepper."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faults import Fault, OutputFault, apply_output_faults
from simulator import SystolicArray, TensorCoreArray


def _bits(x):
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint16)


def _operands(seed, M, K, N):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((M, K)).astype(np.float16), rng.standard_normal((K, N)).astype(np.float16),
            rng.standard_normal((M, N)).astype(np.float32))


ARRAYS = st.sampled_from([("ws", 1), ("ws", 2), ("os", 1), ("os", 3), ("tc", "hopper"), ("tc", "ampere")])


def _array(spec, R, C):
    kind, x = spec
    return TensorCoreArray(R, C, profile=x) if kind == "tc" else SystolicArray(R, C, dataflow=kind, pipeline_depth=x)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 6), st.integers(1, 40), st.integers(1, 6),
       st.integers(1, 3), st.integers(1, 3), ARRAYS, st.data())
def test_kernel_matches_reference_stepper_under_faults(seed, M, K, N, R, C, spec, data):
    arr = _array(spec, R, C)
    a, b, c = _operands(seed, M, K, N)
    regs = arr.registers()
    cycles = arr.run(a, b, c).cycles
    faults = []
    for _ in range(data.draw(st.integers(1, 3))):
        name, width = regs[data.draw(st.integers(0, len(regs) - 1))]
        kind = data.draw(st.sampled_from(["flip", "stuck0", "stuck1"]))
        nbits = data.draw(st.integers(1, 3))
        duration = 1 if kind == "flip" else data.draw(st.sampled_from([None, 1, 5, 30]))
        f = Fault(pe=(data.draw(st.integers(0, R - 1)), data.draw(st.integers(0, C - 1))),
                  register=name, bit=data.draw(st.integers(0, width - nbits)),
                  cycle=data.draw(st.integers(0, cycles - 1)), kind=kind, nbits=nbits, duration=duration)
        # two flips of one bit at one cycle would cancel: the arrays refuse them (ValueError)
        if not any(f.kind == g.kind == "flip" and (f.pe, f.register, f.cycle) == (g.pe, g.register, g.cycle)
                   and f.bit < g.bit + g.nbits and g.bit < f.bit + f.nbits for g in faults):
            faults.append(f)
    fast = arr.run(a, b, c, faults=faults)
    slow = arr.run(a, b, c, faults=faults, trace=("a",))
    np.testing.assert_array_equal(_bits(fast.output), _bits(slow.output))
    np.testing.assert_array_equal(_bits(fast.output), _bits(arr.run(a, b, c, faults=faults).output))  # deterministic


@pytest.mark.parametrize("spec", [("ws", 1), ("os", 2), ("tc", "hopper")])
def test_flips_outside_live_cycles_are_masked(spec):
    arr = _array(spec, 3, 2)
    a, b, c = _operands(5, 4, 20, 3)
    golden = arr.run(a, b, c).output
    sites = arr.fault_sites(4, 20, 3)
    rng = np.random.default_rng(0)
    n_live = n_dead = 0
    for name, width, _ in sites.registers:
        for pe in ((0, 0), (2, 1), (1, 0)):
            live = set(sites.live_cycles(name, pe).tolist())
            for t in rng.choice(sites.cycles, 6, replace=False):
                f = Fault(pe=pe, register=name, bit=int(rng.integers(width)), cycle=int(t))
                out = arr.run(a, b, c, faults=(f,)).output
                if int(t) not in live:
                    n_dead += 1
                    np.testing.assert_array_equal(_bits(out), _bits(golden), err_msg=str(f))
                else:
                    n_live += 1
    assert n_live and n_dead


def test_weight_flip_after_last_use_is_masked_and_before_is_not():
    arr = SystolicArray(4, 4)
    a, b, c = _operands(1, 6, 4, 4)  # one fold: 2R + C + M - 2 = 16 cycles
    golden = arr.run(a, b, c).output
    # PE (1, 2) reads w for input rows 0..5 at cycles 4 + 1 + 2 + m = 7..12
    late = Fault(pe=(1, 2), register="w", bit=14, cycle=12)
    early = Fault(pe=(1, 2), register="w", bit=14, cycle=11)  # read once more, by row 5
    np.testing.assert_array_equal(_bits(arr.run(a, b, c, faults=(late,)).output), _bits(golden))
    out = arr.run(a, b, c, faults=(early,)).output
    assert (_bits(out) != _bits(golden)).sum() == 1 and _bits(out)[5, 2] != _bits(golden)[5, 2]


@pytest.mark.parametrize("arr,reg,pe,cycle", [
    (SystolicArray(4, 4), "psum", (1, 2), 4 + 1 + 2 + 3),         # item 3 at PE (1, 2), latched b + 0
    (SystolicArray(4, 4, dataflow="os"), "acc", (2, 1), 2 + 1 + 2),        # after k=2 at PE (2, 1)
    (TensorCoreArray(2, 2, profile="hopper"), "psum", (0, 1), 2 + 1 + 3 + 3),
])
def test_top_exponent_flip_of_live_accumulator_changes_output(arr, reg, pe, cycle):
    a, b, c = _operands(2, 6, 4, 4)
    golden = arr.run(a, b, c).output
    f = Fault(pe=pe, register=reg, bit=30, cycle=cycle)
    assert cycle in arr.fault_sites(6, 4, 4).live_cycles(reg, pe)
    out = arr.run(a, b, c, faults=(f,)).output
    assert (_bits(out) != _bits(golden)).any()
    assert np.array_equal(_bits(out), _bits(arr.run(a, b, c, faults=(f,)).output))


def test_result_fault_equals_flip_of_last_psum():
    """MPGemmFI's output-bit flip is the register flip of the bottom PE's psum as it
    leaves the array (weight-stationary, one fold)."""
    arr = SystolicArray(4, 4)
    a, b, c = _operands(3, 6, 4, 4)
    i, j = 2, 3
    reg = Fault(pe=(3, j), register="psum", bit=27, cycle=4 + i + 3 + j)
    out = OutputFault(index=(i, j), bit=27)
    np.testing.assert_array_equal(_bits(arr.run(a, b, c, faults=(reg,)).output),
                                  _bits(arr.run(a, b, c, faults=(out,)).output))
    d = arr.run(a, b, c).output
    assert _bits(apply_output_faults(d, (out,)))[i, j] == _bits(d)[i, j] ^ (1 << 27)


def test_stuck_at_and_burst():
    arr = SystolicArray(3, 3, dataflow="os")
    a, b, c = _operands(4, 5, 12, 5)
    golden = arr.run(a, b, c).output
    perm = Fault(pe=(0, 0), register="acc", bit=31, kind="stuck1", duration=None)
    out = arr.run(a, b, c, faults=(perm,)).output
    assert (out[[0, 3], :][:, [0, 3]] <= 0).all()  # every fold's PE (0, 0) output is negative
    burst = Fault(pe=(1, 1), register="a", bit=10, nbits=4, cycle=5)
    assert (_bits(arr.run(a, b, c, faults=(burst,)).output) != _bits(golden)).any()


def test_fault_validation():
    with pytest.raises(ValueError, match="kind must be one of"):
        Fault(pe=(0, 0), register="psum", bit=1, kind="zap")
    with pytest.raises(TypeError, match="pe must be"):
        Fault(pe=[0, 0], register="psum", bit=1)
    with pytest.raises(ValueError, match="bit must be >= 0"):
        Fault(pe=(0, 0), register="psum", bit=-1)
    with pytest.raises(ValueError, match="duration must be 1 for a flip"):
        Fault(pe=(0, 0), register="psum", bit=1, duration=3)
    arr = SystolicArray(4, 4)
    a, b, c = _operands(0, 5, 6, 7)
    cycles = arr.run(a, b, c).cycles
    for f, msg in [(Fault(pe=(4, 0), register="psum", bit=1), r"pe must be in \[0, 4\) x \[0, 4\)"),
                   (Fault(pe=(0, 0), register="acc", bit=1), r"register must be one of \['a', 'psum', 'w'\]"),
                   (Fault(pe=(0, 0), register="psum", bit=32), r"must be in \[0, 31\]"),
                   (Fault(pe=(0, 0), register="a", bit=15, nbits=2), r"must be in \[0, 15\]"),
                   (Fault(pe=(0, 0), register="psum", bit=1, cycle=cycles), rf"cycle must be in \[0, {cycles}\)"),
                   (OutputFault(index=(5, 0), bit=1), r"index must be in \[0, 5\) x \[0, 7\)")]:
        with pytest.raises(ValueError, match=msg):
            arr.run(a, b, c, faults=(f,))
    with pytest.raises(TypeError, match="faults must be"):
        arr.run(a, b, c, faults=("psum",))


_THREE_PASS = __import__("simulator").DatapathProfile(
    "three_pass_test", "test only", {"fp16": __import__("simulator").StepRule(12, frac_bits=24, passes=(0, 1, 2))})


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 5), st.integers(1, 80), st.integers(1, 4),
       st.integers(1, 3), st.integers(1, 3), st.sampled_from(["e4m3", "e5m2", "three_pass"]), st.data())
def test_multi_pass_kernel_matches_reference_stepper_at_live_cycles(seed, M, K, N, R, C, case, data):
    """Multi-pass DPU steps (hopper FP8: two passes, x1 carried): the kernel and the
    stepper agree under faults drawn at cycles where the register is live."""
    import ml_dtypes
    rng = np.random.default_rng(seed)
    dtype = {"e4m3": ml_dtypes.float8_e4m3fn, "e5m2": ml_dtypes.float8_e5m2, "three_pass": np.float16}[case]
    fmt = "fp16" if case == "three_pass" else case
    arr = TensorCoreArray(R, C, profile=_THREE_PASS if case == "three_pass" else "hopper")
    a = (rng.standard_normal((M, K)) * 2.0 ** rng.integers(-3, 3, (M, K))).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    c = rng.standard_normal((M, N)).astype(np.float32)
    sites = arr.fault_sites(M, K, N, fmt)
    faults = []
    for _ in range(data.draw(st.integers(1, 2))):
        name, width, _ = sites.registers[data.draw(st.integers(0, len(sites.registers) - 1))]
        pe = (data.draw(st.integers(0, R - 1)), data.draw(st.integers(0, C - 1)))
        live = sites.live_cycles(name, pe)
        cycle = (int(live[data.draw(st.integers(0, len(live) - 1))]) if len(live) and data.draw(st.booleans())
                 else data.draw(st.integers(0, sites.cycles - 1)))
        kind = data.draw(st.sampled_from(["flip", "flip", "stuck0", "stuck1"]))
        nbits = data.draw(st.integers(1, 2))
        faults.append(Fault(pe=pe, register=name, bit=data.draw(st.integers(0, width - nbits)), cycle=cycle,
                            kind=kind, nbits=nbits, duration=1 if kind == "flip" else data.draw(st.sampled_from([None, 4]))))
    fast = arr.run(a, b, c, faults=faults)
    slow = arr.run(a, b, c, faults=faults, trace=("x1",) if "x1" in dict(arr.registers(fmt)) else ())
    np.testing.assert_array_equal(_bits(fast.output), _bits(slow.output))


def test_pass_result_flip_changes_output_and_dead_cycles_are_masked():
    import ml_dtypes
    arr = TensorCoreArray(2, 2, profile="hopper")
    rng = np.random.default_rng(7)
    a = rng.standard_normal((4, 64)).astype(ml_dtypes.float8_e4m3fn)
    b = rng.standard_normal((64, 3)).astype(ml_dtypes.float8_e4m3fn)
    golden = arr.run(a, b).output
    sites = arr.fault_sites(4, 64, 3, "e4m3")
    for name in ("x1", "emax1", "sum1"):
        live = sites.live_cycles(name, (1, 0))
        width = dict((n, w) for n, w, _ in sites.registers)[name]
        top = 30 if name == "x1" else width - 1  # x1's top exponent bit; the exponent's sign bit
        out = arr.run(a, b, faults=(Fault(pe=(1, 0), register=name, bit=top, cycle=int(live[2])),)).output
        assert (_bits(out) != _bits(golden)).sum() >= 1, name
        dead = sorted(set(range(sites.cycles)) - set(live.tolist()))
        for t in dead[::3]:
            out = arr.run(a, b, faults=(Fault(pe=(1, 0), register=name, bit=top, cycle=t),)).output
            np.testing.assert_array_equal(_bits(out), _bits(golden))
