"""Model campaigns: the tile sub-GEMM is the golden tile bit for bit, masked faults leave
the outputs bitwise golden, trials are pure functions of (campaign, i), chunked
recomputation changes nothing, validation."""
import numpy as np
import pytest

import faults
from faults import Fault, ModelCampaign, TileCheck, make_array, run_model_campaign
from faults._trial import _Runner
from models import Accelerator, ReplaceTile, accelerated, get_model, load_digits, load_params
from simulator import SystolicArray, TensorCoreArray


def _bits(x):
    return np.asarray(x).view(np.dtype(f"uint{np.asarray(x).dtype.itemsize * 8}"))


def _golden(model, profile, fmt, n):
    m, p = get_model(model), load_params(model)
    x = load_digits("test")[0][:n]
    return accelerated(m.apply, Accelerator(profile, fmt)).trace(p, x)


@pytest.mark.parametrize("model,array,fmt", [
    ("cnn", SystolicArray(16, 16), "fp16"),
    ("cnn", SystolicArray(8, 8, dataflow="os", pipeline_depth=2), "bf16"),
    ("mlp", SystolicArray(8, 4), "e4m3"),
    ("transformer", SystolicArray(8, 8), "fp16"),
    ("mlp", TensorCoreArray(4, 4, profile="hopper"), "fp16"),
])
def test_tile_subgemm_is_the_golden_tile_bit_for_bit(model, array, fmt):
    g = _golden(model, array.profile, fmt, 12)
    R, C = array.rows, array.cols
    rng = np.random.default_rng(0)
    for gi, site in enumerate(g.gemms):
        a, b, d = g.operands(gi)
        nrt, nct = -(-site.M // R), -(-site.N // C)
        picks = {(0, 0), (nrt - 1, nct - 1)} | {(int(rng.integers(nrt)), int(rng.integers(nct)))}
        for ti, tj in picks:
            grp = int(rng.integers(site.groups))
            r0, c0 = ti * R, tj * C
            at = np.ascontiguousarray(a[grp, r0:r0 + R])
            bt = np.ascontiguousarray(b[grp, :, c0:c0 + C])
            out = array.run(at, bt, np.zeros((at.shape[0], bt.shape[1]), d.dtype),
                            input_format="tf32" if fmt == "tf32" else None).output
            assert np.array_equal(_bits(out), _bits(d[grp, r0:r0 + R, c0:c0 + C])), (gi, ti, tj)


def test_fault_with_no_effect_leaves_outputs_bitwise_golden():
    g = _golden("cnn", "systolic_fma", "fp16", 16)
    arr = SystolicArray(8, 8)
    a, b, d = g.operands(1)
    at, bt = np.ascontiguousarray(a[0, :8]), np.ascontiguousarray(b[0, :, :8])
    sites = arr.fault_sites(8, at.shape[1], 8)
    dead = sorted(set(range(sites.cycles)) - set(sites.live_cycles("psum", (2, 3)).tolist()))
    live = sites.live_cycles("psum", (2, 3))
    for cyc, expect_same in ((dead[0], True), (int(live[0]), None)):
        tile = arr.run(at, bt, faults=[Fault((2, 3), "psum", 0, cyc)]).output
        if expect_same:
            assert np.array_equal(_bits(tile), _bits(d[0, :8, :8]))
        out = g.inject([ReplaceTile(1, (0, 8), (0, 8), lambda *_: tile)])
        if np.array_equal(_bits(tile), _bits(d[0, :8, :8])):
            assert np.array_equal(_bits(out), _bits(g.outputs))
    # through the campaign: every trial whose tile is unchanged is masked with the golden logits
    r = _Runner(ModelCampaign(model="cnn", array=arr, batch=16, trials=80))
    rows = r.run_many(range(80))
    assert all(isinstance(x, faults.TrialResult) for x in rows)
    assert any(x.tile_diff == 0 for x in rows) and any(x.tile_diff > 0 for x in rows)
    for x in rows:
        if x.tile_diff == 0:
            assert x.outcome == "masked" and x.max_abs_err == 0.0


def test_trials_are_pure_and_chunking_changes_nothing():
    c = ModelCampaign(model="cnn", array=SystolicArray(8, 8), batch=24, trials=60, seed=3, chunk=8)
    r1 = _Runner(c)
    rows = r1.run_many(range(60))
    assert r1.run_many([41, 7]) == [rows[41], rows[7]]
    r2 = _Runner(c.with_(chunk=None))
    assert r2.run_many(range(60)) == rows
    r3 = _Runner(c.with_(chunk=5))  # chunks not aligned with tiles
    assert r3.run_many(range(60)) == rows
    assert _Runner(c.with_(seed=4)).run_many(range(10)) != rows[:10]
    out = {x.outcome for x in rows}
    assert "masked" in out and out <= set(faults.TRIAL_OUTCOMES)


def test_sites_are_drawn_without_replacement_and_cover_the_space():
    c = ModelCampaign(model="mlp", array=SystolicArray(4, 4), batch=4, trials=500, stratify="layer")
    sp = faults.site_space(c)
    assert len(sp.strata) == 3 and sp.total == 1500
    sites = [sp.site(i) for i in range(sp.total)]
    keys = [(s.gemm, s.group, s.row0, s.col0, s.register, s.bit, s.pe, s.cycle) for s in sites]
    assert len(set(keys)) == len(keys)
    for s in sites:
        st = sp.strata[s.stratum]
        assert s.gemm in st.gemms and s.trial - st.first < st.trials
        assert 0 <= s.pe[0] < 4 and 0 <= s.pe[1] < 4
        w = dict(c.array.registers("fp16"))[s.register]
        assert 0 <= s.bit < w
        assert s.cycle < c.array.fault_sites(s.rows, sp.gemms["fp16"][s.gemm].K, s.cols).cycles
    # formula-sized strata
    sp2 = faults.site_space(c.with_(trials=None, margin=0.1))
    assert all(s.trials == faults.sample_size(s.population, 0.1, 0.95) for s in sp2.strata)


def test_value_level_and_formats():
    c = ModelCampaign(model="mlp", array=SystolicArray(8, 8), batch=16, level="value", trials=40,
                      formats=("fp16", "bf16"))
    r = _Runner(c)
    rows = r.run_many(range(80))
    assert {x.format for x in rows} == {"fp16", "bf16"}
    assert all(x.register == "output" and x.rows == x.cols == 1 and x.tile_diff == 1 for x in rows)  # one element
    assert all((x.pe_row, x.pe_col, x.cycle) == (-1, -1, -1) for x in rows)




def flag_everything(check):
    assert isinstance(check, TileCheck) and check.d.shape == (check.a.shape[0], check.b.shape[1])
    return True


def test_detector_hook():
    c = ModelCampaign(model="mlp", array=SystolicArray(8, 8), batch=8, trials=20,
                      detector="tests.faults.test_campaign_model:flag_everything")
    rows = _Runner(c).run_many(range(20))
    assert all(x.outcome == "detected" for x in rows)
    assert {x.effect for x in rows} <= set(faults.TRIAL_OUTCOMES) - {"detected"}


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(model="vgg"), ValueError, "model must be one of"),
    (dict(array="16x16"), TypeError, "array must be"),
    (dict(formats=("fp64",)), ValueError, "formats must be in"),
    (dict(batch=0), ValueError, "batch must be >= 1"),
    (dict(batch=1000), ValueError, "batch must be <= 360"),
    (dict(level="gate"), ValueError, "level must be one of"),
    (dict(registers=("acc",)), ValueError, "registers must be among"),
    (dict(trials=0), ValueError, "trials must be >= 1"),
    (dict(margin=1.5), ValueError, "margin must be in"),
    (dict(stratify="bit"), ValueError, "stratify must be one of"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(detector="nocolon"), ValueError, "detector must be"),
    (dict(accumulator="fp16"), ValueError, "accumulator must be one of"),
])
def test_campaign_validation(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        ModelCampaign(**kw)


def test_campaign_json_roundtrip():
    c = ModelCampaign(model="mlp", array=make_array(4, 8, "hopper"), formats=("fp16", "bf16"),
                      registers=("psum",), trials=5)
    assert isinstance(c.array, TensorCoreArray)
    assert ModelCampaign.from_json(c.to_json()) == c and ModelCampaign.from_json(c.to_json()).digest == c.digest


def test_serial_and_process_pool_store_the_same_table(tmp_path):
    c = ModelCampaign(model="mlp", array=SystolicArray(8, 8), batch=16, trials=40, seed=1)
    a = run_model_campaign(c, tmp_path / "a.db", executor="serial")
    b = run_model_campaign(c, tmp_path / "b.db", workers=2, batch_size=7)
    assert a.complete and b.complete and a.executor == "serial" and b.executor == "process"
    with faults.ResultStore.open(tmp_path / "a.db") as sa, faults.ResultStore.open(tmp_path / "b.db") as sb:
        assert sa.rows() == sb.rows() and len(sa.rows()) == 40


def test_native_value_injector_matches_the_bridge_gemms():
    import jax

    for name in ("cnn", "transformer"):
        m, p = get_model(name), load_params(name)
        x = load_digits("test")[0][:8]
        inj = faults.NativeValueInjector(m.apply, p, x)
        sites = accelerated(m.apply, Accelerator("systolic_fma", "fp16")).gemms(p, x)
        assert [s for s, _ in inj.gemms] == [tuple(s.out_shape) for s in sites]
        # XLA fuses the re-traced graph its own way: equal up to float32 rounding
        np.testing.assert_allclose(inj.golden, np.asarray(jax.jit(m.apply)(p, x)), rtol=1e-5, atol=1e-5)
        assert np.array_equal(_bits(inj(-1, 0, 30)), _bits(inj.golden))
        assert not np.array_equal(_bits(inj(len(inj.gemms) - 1, 3, 30)), _bits(inj.golden))
