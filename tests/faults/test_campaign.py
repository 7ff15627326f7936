"""Campaigns: golden-run re-runs equal full runs, uniform live-site sampling,
determinism, resuming from a store, the coverage table."""
import json

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faults import Fault, compare_schemes, coverage_table, run_campaign
from protection import Abft, Dmr, Parity, ProtectedArray, SecDed
from simulator import SystolicArray, TensorCoreArray

CONFIGS = st.sampled_from([("ws", 1, np.float16), ("ws", 2, ml_dtypes.bfloat16), ("os", 2, np.float16),
                           ("tc", "hopper", np.float16), ("tc", "hopper", ml_dtypes.float8_e4m3fn),
                           ("tc", "ampere", np.float16)])


def _array(spec, R, C):
    kind, x, _ = spec
    return TensorCoreArray(R, C, profile=x) if kind == "tc" else SystolicArray(R, C, dataflow=kind, pipeline_depth=x)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 12), st.integers(1, 80), st.integers(1, 12),
       st.integers(1, 4), st.integers(1, 4), CONFIGS, st.data())
def test_golden_inject_equals_full_run(seed, M, K, N, R, C, spec, data):
    """A fault re-run on the rows and fold it touches gives the full run's D."""
    rng = np.random.default_rng(seed)
    arr = _array(spec, R, C)
    a = rng.standard_normal((M, K)).astype(spec[2])
    b = rng.standard_normal((K, N)).astype(spec[2])
    c = rng.standard_normal((M, N)).astype(np.float32)
    g = arr.golden(a, b, c)
    sites = ProtectedArray(arr, ()).fault_sites(M, K, N, g.fmt.name)
    f = sites.draw(seed, 0)
    if data.draw(st.booleans()):  # sometimes a stuck-at or burst over several cycles
        f = Fault(pe=f.pe, register=f.register, bit=max(0, f.bit - 1), cycle=f.cycle, kind="stuck1", nbits=1,
                  duration=data.draw(st.sampled_from([1, 3, None])))
    inj = g.inject((f,))
    full = arr.run(a, b, c, faults=(f,)).output
    np.testing.assert_array_equal(inj.output.view(np.uint32), full.view(np.uint32))


@pytest.mark.parametrize("arr,fmt", [(SystolicArray(3, 4), "fp16"), (SystolicArray(3, 2, dataflow="os"), "fp16"),
                                     (TensorCoreArray(2, 3), "e4m3")])
def test_sampled_faults_are_live_and_uniform(arr, fmt):
    parr = ProtectedArray(arr, (Parity(registers=("a",)), Dmr()))
    M, K, N = 7, 70, 5
    sites = parr.fault_sites(M, K, N, fmt)
    L = sites.layout
    faults = sites.sample(3000, seed=4)
    assert faults == sites.sample(3000, seed=4)
    counts = {}
    for f in faults:
        counts[f.register] = counts.get(f.register, 0) + 1
        base = f.register if f.register in L.base else L.sites[f.register][1].mirror
        if base:
            ew = L.base[base].elem_width if f.register in L.base else L.sites[f.register][1].elem_width
            assert L.plan.is_live(base, f.pe, f.cycle, f.bit // ew), f
        else:
            assert f.cycle < sites.cycles
    # each register's share matches its bits x live cycles
    total = sites.size
    for name, n in counts.items():
        want = sum(g.size for g in sites.population.groups if g.register == name) / total
        assert abs(n / len(faults) - want) < 4 * np.sqrt(want * (1 - want) / len(faults)) + 1e-3, name


def test_campaign_counts_determinism_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 24)).astype(np.float16)
    b = rng.standard_normal((24, 12)).astype(np.float16)
    arr = SystolicArray(4, 4)
    parr = ProtectedArray(arr, (SecDed(),))
    r1 = run_campaign(parr, a, b, n=300, seed=3)
    assert sum(r1.counts.values()) == 300 and r1.false_alarms == 0
    assert dict(run_campaign(parr, a, b, n=300, seed=3).counts) == dict(r1.counts)
    store = tmp_path / "trials.jsonl"
    part = run_campaign(parr, a, b, n=120, seed=3, store=str(store))  # "killed" after 120
    assert sum(part.counts.values()) == 120
    full = run_campaign(parr, a, b, n=300, seed=3, store=str(store))  # resumes
    assert dict(full.counts) == dict(r1.counts)
    lines = store.read_text().splitlines()
    assert len(lines) == 301 and json.loads(lines[0])["header"]["seed"] == 3
    with pytest.raises(ValueError, match="store must hold trials of this campaign"):
        run_campaign(parr, a, b, n=10, seed=4, store=str(store))
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        run_campaign(parr, a, b, n=-1)


def test_compare_schemes_and_table():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((16, 32)).astype(np.float16)
    b = rng.standard_normal((32, 16)).astype(np.float16)
    res = compare_schemes(SystolicArray(4, 4), (Parity(), SecDed(), (Dmr(), Abft())), a, b, n=400, seed=1)
    assert [r.scheme for r in res] == ["none", "parity(flag)", "sec-ded(flag)", "dmr(recompute)+abft(safety=2.0; correct)"]
    none, par, sd, both = res
    assert none.added_cycles == 0 and none.added_bits == 0 and none.fraction("detected") == 0
    assert par.fraction("detected") > 0.3 and sd.fraction("corrected") > 0.3
    assert both.fraction("sdc") < none.fraction("sdc")
    assert all(r.false_alarms == 0 and r.bits_ratio >= 1 and r.cycles_ratio >= 1 for r in res)
    table = coverage_table(res)
    assert table.count("\n") == 5 and "| sec-ded(flag) |" in table
