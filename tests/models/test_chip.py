"""A whole model on a faulty chip (models.run_on_chip, array_gemm, param_masks,
retrain_masked, chip_matmul, finetune_on_chip)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from simulator import FaultMap, SystolicArray

ACC = models.Accelerator("systolic_fma", "fp16")


@pytest.fixture(scope="module")
def cnn():
    m, p = models.get_model("cnn"), models.load_params("cnn")
    x, y = models.load_digits("test")
    x = jnp.asarray(x[:12])
    return m, p, x, models.accelerated(m.apply, ACC).trace(p, x)


def test_fault_free_chip_is_the_accelerator(cnn):
    m, p, x, tr = cnn
    arr = SystolicArray(8, 8, dataflow="ws")
    out = models.run_on_chip(tr, models.array_gemm(arr, FaultMap(()), ACC))
    assert np.array_equal(np.asarray(out).view(np.uint32), np.asarray(tr.outputs).view(np.uint32))
    # a fault on a PE no GEMM reaches (fc: N=10 uses cols 0..7 and 0..1; conv1 K=9 rows 0..7 and 0)
    # is masked only if unused: every PE is used here, so a high psum bit changes the logits
    fm = FaultMap([((3, 1), "psum", 30, "stuck1")])
    bad = models.run_on_chip(tr, models.array_gemm(arr, fm, ACC))
    assert not np.array_equal(np.asarray(bad), np.asarray(tr.outputs))
    # the same chip as a from-scratch accelerated function
    again = models.accelerated(m.apply, ACC, faults=models.chip_faults(tr.gemms, models.array_gemm(arr, fm, ACC)))(p, x)
    assert np.array_equal(np.asarray(again).view(np.uint32), np.asarray(bad).view(np.uint32))


def test_array_gemm_is_the_cycle_level_array_run(cnn):
    """array_gemm (simulator.chip_gemm with the bridge's fault-free d) gives, for every
    GEMM of the model, the bits of array.run with the fault map: a chip with faults in
    every register kind."""
    m, p, x, tr = cnn
    arr = SystolicArray(8, 8, dataflow="ws")
    for seed in (1,):
        fm = FaultMap.sample(arr, rate=0.08, seed=seed)
        assert {f.register for f in fm} == {"a", "w", "psum"}

        def slow(a, b, d, fm=fm):
            return arr.run(a, b, np.zeros(d.shape, d.dtype), fault_map=fm).output

        fast = models.run_on_chip(tr, models.array_gemm(arr, fm, ACC))
        ref = models.run_on_chip(tr, slow)
        assert np.array_equal(np.asarray(fast).view(np.uint32), np.asarray(ref).view(np.uint32))


def test_array_gemm_refuses_a_mismatched_chip():
    with pytest.raises(ValueError, match="array profile must be the accelerator's"):
        models.array_gemm(SystolicArray(4, 4), FaultMap(()), models.Accelerator("hopper", "fp16"))
    with pytest.raises(ValueError, match="pe must be in"):
        models.array_gemm(SystolicArray(4, 4), FaultMap([((4, 4), "a", 1, "stuck1")]), ACC)


def test_param_masks_follow_the_lowering_order():
    arr = SystolicArray(5, 3)
    fm = FaultMap([((1, 2), "w", 14, "stuck1"), ((4, 0), "a", 3, "stuck0")])
    p = models.load_params("cnn")
    masks = models.param_masks(p, arr, fm)
    assert set(masks) == {"conv1/w", "conv2/w", "fc/w"}
    w = masks["conv2/w"]  # HWIO (3, 3, 16, 32): K index ci*9 + kh*3 + kw, column o
    for kh, kw, ci, o in [(0, 0, 0, 2), (2, 1, 5, 7), (1, 2, 15, 30), (0, 1, 3, 0)]:
        k = ci * 9 + kh * 3 + kw
        assert w[kh, kw, ci, o] == ((k % 5, o % 3) in fm.pes)
    assert masks["fc/w"].shape == (128, 10) and masks["fc/w"][6, 5] and masks["fc/w"][4, 3]
    assert [m.shape for m in models.weight_masks(arr, fm, [(9, 16), (144, 32)])] == [(9, 16), (144, 32)]


def test_retrain_keeps_masked_weights_at_zero():
    arr = SystolicArray(4, 4)
    p = models.load_params("cnn")
    masks = models.param_masks(p, arr, FaultMap.sample(arr, rate=0.5, seed=0))
    q, secs = models.retrain_masked("cnn", p, masks, epochs=1)
    assert secs > 0
    for k, m in masks.items():
        assert m.any() and (q[k][m] == 0).all() and (q[k][~m] != 0).mean() > 0.9


def test_chip_matmul_runs_the_chip_inside_jit(cnn):
    """The faulty chip as the JAX bridge's GEMM (host callback under jax.jit) gives the
    bits of the eager run_on_chip with array_gemm."""
    m, p, x, tr = cnn
    arr = SystolicArray(8, 8, dataflow="ws")
    fm = FaultMap.sample(arr, rate=0.08, seed=2)
    want = models.run_on_chip(tr, models.array_gemm(arr, fm, ACC))
    jacc = models.Accelerator("systolic_fma", "fp16", engine="jax")
    fn = models.accelerated(m.apply, jacc, matmul=models.chip_matmul(arr, fm, jacc))
    got = jax.jit(fn)(p, x)
    assert np.array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))
    with pytest.raises(TypeError, match="matmul must be a callable with Accelerator\\(engine='jax'\\)"):
        models.accelerated(m.apply, ACC, matmul=models.chip_matmul(arr, fm, jacc))
    with pytest.raises(ValueError, match="array profile must be the accelerator's"):
        models.chip_matmul(arr, fm, models.Accelerator("hopper", "fp16", engine="jax"))


def test_fault_aware_fine_tuning_learns_around_the_chip():
    """A 32x32 chip with stuck weight-register bits at 1 % of its PEs: the CNN fine-tuned
    with the chip in the loop (2 epochs) does better on that chip than the shipped one."""
    arr = SystolicArray(32, 32, dataflow="ws", profile="systolic_fma")
    m, p = models.get_model("cnn"), models.load_params("cnn")
    x, y = models.load_digits("test")
    fm = FaultMap.sample(arr, rate=0.01, seed=3, registers="w", input_format="fp16")

    def on_chip(params):
        tr = models.accelerated(m.apply, ACC).trace(params, jnp.asarray(x))
        return float((np.asarray(models.run_on_chip(tr, models.array_gemm(arr, fm, ACC))).argmax(-1) == y).mean())

    before = on_chip(p)
    q, secs = models.finetune_on_chip("cnn", p, arr, fm, ACC, epochs=2, seed=0)
    after = on_chip(q)
    assert secs > 0 and set(q) == set(p)
    assert before < 0.95 and after > before + 0.03, (before, after)
