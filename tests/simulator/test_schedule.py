"""The public schedule (simulator.Schedule), registers (simulator.Register) and the
fault-site population (simulator.FaultSites): formulas, runs and scans held together."""
import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import simulator
from simulator import REGISTER_ROLES, Fault, FaultSites, Register, Schedule, SystolicArray, TensorCoreArray


def _ceil(a, b):
    return -(-a // b)


@pytest.mark.parametrize("R,C,M,K,N,dataflow,d", [(3, 4, 5, 7, 6, "ws", 1), (4, 3, 9, 5, 7, "os", 2),
                                                  (2, 2, 3, 9, 5, "ws", 3), (5, 2, 12, 3, 4, "os", 1)])
def test_systolic_schedule_formulas_and_run(R, C, M, K, N, dataflow, d):
    arr = SystolicArray(R, C, dataflow=dataflow, pipeline_depth=d)
    s = arr.schedule(M, K, N, input_format="fp16")
    assert isinstance(s, Schedule)
    if dataflow == "ws":
        folds, length = _ceil(K, R) * _ceil(N, C), 2 * R + C + M - 2 + d - 1
        assert s.k_folds == _ceil(K, R) and s.items == M
        assert s.fold_rows == tuple(min(R, K - (f % _ceil(K, R)) * R) for f in range(folds))
        assert s.fold_cols == tuple(min(C, N - (f // _ceil(K, R)) * C) for f in range(folds))
    else:
        folds, length = _ceil(M, R) * _ceil(N, C), 2 * R + C + K - 2 + d - 1
        assert s.k_folds == 1 and s.items == K
        assert s.fold_rows == tuple(min(R, M - (f // _ceil(N, C)) * R) for f in range(folds))
    assert (s.folds, s.fold_length, s.cycles) == (folds, length, folds * length)
    assert (s.rows, s.cols, s.m, s.k, s.n, s.step, s.passes, s.depth) == (R, C, M, K, N, 1, 1, d)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((M, K)).astype(np.float16), rng.standard_normal((K, N)).astype(np.float16)
    r = arr.run(a, b)
    assert r.cycles == s.cycles and r.folds == s.folds


@pytest.mark.parametrize("fmt,P,S", [("fp16", 1, 3), ("e4m3", 2, 1)])
def test_tensor_core_schedule_depth_and_interval(fmt, P, S):
    arr = TensorCoreArray(3, 2)
    s = arr.schedule(5, 70, 3, input_format=fmt)
    rule = simulator.get_profile("hopper").rule(fmt)
    steps = _ceil(70, rule.k)
    assert (s.step, s.passes, s.row_interval, s.depth) == (rule.k, P, S, 3 * P + 1)
    assert s.fold_length == 3 + 5 + 2 - 2 + (3 - 1) * S + 3 * P + 1
    assert s.folds == _ceil(steps, 3) * _ceil(3, 2) and s.cycles == s.folds * s.fold_length
    assert arr.cycles(5, 70, 3, fmt) == s.cycles
    assert s.input_format == fmt and s.acc_format == "fp32"


def test_schedule_is_frozen_and_validated():
    s = SystolicArray(2, 2).schedule(3, 3, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cycles = 1
    with pytest.raises(ValueError, match="register must be one of"):
        s.register("nope")
    with pytest.raises(ValueError, match="m must be an int"):
        SystolicArray(2, 2).schedule(-1, 3, 3)


def test_registers_public_description():
    s = TensorCoreArray(2, 2).schedule(4, 64, 4, input_format="e4m3")
    for reg in s.registers:
        assert isinstance(reg, Register) and reg.role in REGISTER_ROLES
        # the bit fields tile one element exactly
        spans = sorted((lo, hi) for _, lo, hi in reg.bit_fields)
        assert spans[0][0] == 0 and spans[-1][1] == reg.elem_width
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert reg.width == reg.elem_width * reg.elems
    roles = {r.name: r.role for r in s.registers}
    assert roles == {"a": "a", "w": "w", "prod": "prod", "emax": "emax", "aligned": "aligned", "sum": "sum",
                     "x1": "x", "emax1": "emax", "aligned1": "aligned", "sum1": "sum", "psum": "psum"}
    assert s.register("w").stationary and s.register("a").flow == "right" and s.register("a").operand
    assert s.register("a").elem_delay[:4] == (0, 0, 3, 3)  # passes by k % 4: (0, 0, 1, 1)
    os_ = SystolicArray(2, 2, dataflow="os", pipeline_depth=2).schedule(3, 3, 3)
    assert [(r.name, r.role, r.flow) for r in os_.registers] == [
        ("a", "a", "right"), ("b", "b", "down"), ("prod1", "prod", ""), ("acc", "psum", "")]
    assert os_.accumulator == "acc"
    with pytest.raises(ValueError, match="role must be one of"):
        Register("q", "nope", 0, 0, 8)


@pytest.mark.parametrize("arr,fmt", [(SystolicArray(3, 2), "fp16"), (SystolicArray(2, 3, dataflow="os", pipeline_depth=2), "fp16"),
                                     (TensorCoreArray(2, 2), "fp16"), (TensorCoreArray(2, 2), "e4m3")])
def test_closed_form_liveness_matches_the_event_scan(arr, fmt):
    s = arr.schedule(4, 40, 3, input_format=fmt)
    for reg in s.registers:
        for r in range(s.rows):
            for c in range(s.cols):
                closed = sorted({t for lo, hi in s.live_ranges(reg.name, (r, c)) for t in range(lo, hi)})
                assert closed == s._scan_live_cycles(reg.name, (r, c)).tolist() == s.live_cycles(reg.name, (r, c)).tolist(), (reg.name, r, c)


@pytest.mark.parametrize("arr,fmt", [(SystolicArray(3, 2), "fp16"), (SystolicArray(2, 3, dataflow="os"), "fp16"),
                                     (TensorCoreArray(2, 2), "fp16")])
def test_population_live_size_and_draws(arr, fmt):
    sites = arr.fault_sites(4, 40, 3, fmt)
    s = sites.schedule
    # no element delays here: live points = width x live cycles, summed over PEs (the scan)
    want = sum(reg.width * len(s.live_cycles(reg.name, (r, c)))
               for reg in s.registers for r in range(s.rows) for c in range(s.cols))
    assert sites.live_size == want
    assert sites.size == sum(reg.width for reg in s.registers) * s.rows * s.cols * s.cycles
    draws = sites.sample(200, seed=3, live=True)
    assert draws == tuple(sites.draw(3, i) for i in range(200))
    assert draws != sites.sample(200, seed=4, live=True)
    for f in draws:
        elem = f.bit // s.register(f.register).elem_width
        assert s.is_live(f.register, f.pe, f.cycle, elem), f
    drawn = {f.register for f in draws}
    assert drawn <= set(s.register_names)
    widest = max(s.registers, key=lambda r: r.width).name
    assert widest in drawn and len(drawn) >= 2
    # the plain sampler keeps its stream
    assert sites.sample(5, seed=1) == sites.sample(5, seed=1)
    assert isinstance(sites, FaultSites)


def test_outputs_leave_the_array_once_per_fold():
    for arr in (SystolicArray(3, 2), SystolicArray(2, 3, dataflow="os"), TensorCoreArray(2, 2)):
        s = arr.schedule(4, 40, 5, input_format="fp16")
        seen = {}
        for col in range(s.cols):
            for t in range(s.cycles):
                ij = s.output_at(col, t)
                if ij is not None:
                    seen[ij] = seen.get(ij, 0) + 1
                    fold = t // s.fold_length
                    assert any(lo <= t % s.fold_length < hi for lo, hi in
                               s.output_cycles(col, s.fold_rows[fold], s.fold_cols[fold]))
        assert set(seen) == {(i, j) for i in range(4) for j in range(5)}
        assert set(seen.values()) == {s.k_folds}
        assert s.output_tile(3, 4)[1] == ((4 // s.cols) * s.cols, min(5, (4 // s.cols + 1) * s.cols))


def test_import_simulator_loads_nothing_above_it():
    code = ("import sys, simulator; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('jax', 'faults', 'protection', 'models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_catalogues_are_read_only():
    with pytest.raises(TypeError):
        simulator.FORMATS["x"] = simulator.FORMATS["fp16"]
    with pytest.raises(TypeError):
        simulator.PROFILES["x"] = simulator.PROFILES["hopper"]


def test_flip_bits_is_the_one_output_flip():
    import ml_dtypes
    x = np.array([[1.0, 2.0]], np.float16)
    y = simulator.flip_bits(x, (0, 1), 15)
    assert y[0, 1] == -2.0 and x[0, 1] == 2.0 and y[0, 0] == 1.0  # a copy; one element
    assert simulator.flip_bits(np.array([1.0]), 0, 63)[0] == -1.0
    assert simulator.flip_bits(np.array([1.0], ml_dtypes.bfloat16), 0, 7)[0] == 0.5  # exponent LSB
    assert simulator.flip_bits(np.array([1.0], np.float32), 0, 0, 2).view(np.uint32)[0] == 0x3F800003
    with pytest.raises(ValueError, match="bit..bit"):
        simulator.flip_bits(x, (0, 0), 15, 2)


@pytest.mark.parametrize("call, exc, msg", [
    (lambda a: a.fault_sites(-4, 4, 4), ValueError, "m must be an int >= 0, not -4"),
    (lambda a: a.fault_sites(4.5, 4, 4), ValueError, "m must be an int >= 0, not 4.5"),
    (lambda a: a.cycles(4, -100, 4), ValueError, "k must be an int >= 0, not -100"),
    (lambda a: a.schedule(4, 4, True), ValueError, "n must be an int >= 0, not True"),
    (lambda a: a.fault_sites(4, 4, 4).live_cycles("bogus", (0, 0)), ValueError, "register must be one of"),
    (lambda a: a.fault_sites(4, 4, 4).live_cycles("psum", (9, 0)), ValueError, r"pe must be in \[0, 3\)"),
    (lambda a: a.fault_sites(4, 4, 4).sample(-1), ValueError, "n must be an int >= 0, not -1"),
    (lambda a: a.fault_sites(4, 4, 4).draw(0, -2), ValueError, "i must be an int >= 0, not -2"),
])
def test_bad_arguments_are_refused(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call(SystolicArray(3, 2))


def test_the_same_flip_twice_is_refused_not_cancelled():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 6)).astype(np.float16)
    b = rng.standard_normal((6, 3)).astype(np.float16)
    arr = SystolicArray(3, 2)
    f = Fault(pe=(1, 1), register="psum", bit=30, cycle=int(arr.fault_sites(4, 6, 3).live_cycles("psum", (1, 1))[0]))
    with pytest.raises(ValueError, match="must not flip the same bit twice"):
        arr.run(a, b, faults=(f, f))
    with pytest.raises(ValueError, match="must not flip the same bit twice"):
        arr.run(a, b, faults=(f, Fault(pe=(1, 1), register="psum", bit=29, nbits=2, cycle=f.cycle)))
    # a different bit at the same site is two faults, both applied
    two = arr.run(a, b, faults=(f, Fault(pe=(1, 1), register="psum", bit=29, cycle=f.cycle))).output
    assert not np.array_equal(two.view(np.uint32), arr.run(a, b).output.view(np.uint32))


def test_live_cycles_expands_the_closed_form_ranges_on_a_large_gemm():
    s = SystolicArray(1, 1).schedule(64, 64, 64)
    live = s.live_cycles("psum", (0, 0))
    want = np.array(sorted({t for lo, hi in s.live_ranges("psum", (0, 0)) for t in range(lo, hi)}), np.int64)
    assert live.dtype == np.int64 and np.array_equal(live, want) and len(live) > 0


def test_run_reports_faults_on_dead_cycles():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 8)).astype(np.float16)
    b = rng.standard_normal((8, 5)).astype(np.float16)
    arr = SystolicArray(3, 2)
    sites = arr.fault_sites(6, 8, 5)
    live = set(sites.live_cycles("psum", (1, 1)).tolist())
    dead_cycle = next(t for t in range(sites.cycles) if t not in live)
    on = Fault(pe=(1, 1), register="psum", bit=30, cycle=min(live))
    off = Fault(pe=(1, 1), register="psum", bit=30, cycle=dead_cycle)
    r = arr.run(a, b, faults=(on, off))
    assert r.dead_faults == (off,)
    assert np.array_equal(arr.run(a, b, faults=(off,)).output.view(np.uint32), arr.run(a, b).output.view(np.uint32))
    assert arr.run(a, b, faults=(on,)).dead_faults == ()
