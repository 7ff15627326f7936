"""The digit models: they run, the shipped weights are accurate, training is deterministic."""
import numpy as np
import pytest

from models import (MODELS, TABLE_FORMATS, Accelerator, accuracy_table, get_model, load_digits, load_params,
                    predict, train)

# fp32 floors for the shipped weights (they score 98.6 / 98.6 / 97.2 %), and how much
# each simulated format may lose against fp32 (percentage points / 100)
FP32_FLOOR = {"mlp": 0.97, "cnn": 0.97, "transformer": 0.95}
MAX_DROP = {"fp32": 0.0, "fp16": 0.01, "bf16": 0.02, "e4m3": 0.03, "e5m2": 0.05}


def test_data_split():
    xtr, ytr = load_digits("train")
    xte, yte = load_digits("test")
    assert xtr.shape == (1437, 64) and xte.shape == (360, 64)
    assert xtr.dtype == np.float32 and ytr.dtype == np.int32
    assert 0 <= xte.min() and xte.max() <= 1
    assert set(np.unique(yte)) == set(range(10))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_runs_natively_and_accelerated(name):
    x, _ = load_digits("test")
    native = predict(name, x[:8])
    assert native.shape == (8, 10) and native.dtype == np.float32
    for acc in (Accelerator("hopper", "bf16"), Accelerator("systolic_fma", "e5m2")):
        sim = predict(name, x[:8], acc)
        assert sim.shape == (8, 10) and sim.dtype == np.float32 and np.isfinite(sim).all()
        # e5m2 keeps 2 mantissa bits: logits move by up to a few units, predictions barely
        assert (sim.argmax(-1) == native.argmax(-1)).sum() >= 7
        if acc.input_format == "bf16":
            np.testing.assert_allclose(sim, native, atol=0.5)


def test_shipped_weights_accuracy():
    table = accuracy_table()
    assert set(table) == set(MODELS)
    for name, row in table.items():
        assert set(row) == set(TABLE_FORMATS)
        assert row["fp32"] >= FP32_FLOOR[name], (name, row)
        for fmt, acc in row.items():
            assert acc >= row["fp32"] - MAX_DROP[fmt], (name, fmt, row)


def test_shipped_weights_shapes_match_init():
    import jax

    for name in MODELS:
        shipped = load_params(name)
        fresh = get_model(name).init(jax.random.key(0))
        assert {k: v.shape for k, v in shipped.items()} == {k: v.shape for k, v in fresh.items()}


def test_training_is_deterministic():
    a = train("mlp", epochs=2)
    b = train("mlp", epochs=2)
    c = train("mlp", epochs=2, seed=1)
    assert all(np.array_equal(a[k].view(np.uint32), b[k].view(np.uint32)) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
