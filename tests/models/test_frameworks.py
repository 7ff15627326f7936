"""Flax linen, Flax nnx and Equinox models through the bridge unchanged (fault-free,
GEMM by GEMM equal to simulator.matmul) and through a small campaign each."""
from __future__ import annotations

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import faults
from models import Accelerator, Workload, accelerated
from simulator import SystolicArray, matmul


def _bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))


class LinenCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(5, name="head")(x)


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(12, 16, rngs=rngs)
        self.l2 = nnx.Linear(16, 5, rngs=rngs)

    def __call__(self, x):
        return self.l2(jax.nn.relu(self.l1(x)))


def linen_workload():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 6, 6, 1)), jnp.float32)
    m = LinenCNN()
    return Workload(m.apply, m.init(jax.random.key(0), x), x, name="linen-cnn"), 2


def nnx_workload():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 12)), jnp.float32)
    graphdef, state = nnx.split(NnxMLP(nnx.Rngs(0)))
    return Workload(lambda s, x: nnx.merge(graphdef, s)(x), state, x, name="nnx-mlp"), 2


def eqx_workload():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((4, 12)), jnp.float32)
    mlp = eqx.nn.MLP(12, 5, 16, 1, key=jax.random.key(0))
    return Workload(lambda m, x: jax.vmap(m)(x), mlp, x, name="eqx-mlp"), 2


WORKLOADS = [linen_workload, nnx_workload, eqx_workload]


@pytest.mark.parametrize("make", WORKLOADS, ids=lambda f: f.__name__)
def test_bridge_gemm_by_gemm_equals_matmul(make):
    wl, n_gemms = make()
    acc = Accelerator("hopper", "fp16")
    golden = accelerated(wl.apply, acc).trace(wl.params, wl.inputs)
    assert len(golden.gemms) == n_gemms and all(s.where == "simulator" for s in golden.gemms)
    for g, site in enumerate(golden.gemms):
        a, b, d = golden.operands(g)
        for i in range(site.groups):
            want = matmul(np.ascontiguousarray(a[i]), np.ascontiguousarray(b[i]), np.zeros((site.M, site.N),
                          np.float32), profile="hopper")
            assert np.array_equal(_bits(d[i]), _bits(want))
    # the model runs unchanged: close to native JAX (fp16 operands, fp32 accumulation)
    native = np.asarray(wl.apply(wl.params, wl.inputs))
    np.testing.assert_allclose(np.asarray(golden.outputs), native, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("make", WORKLOADS, ids=lambda f: f.__name__)
def test_small_campaign(make, tmp_path):
    wl, n_gemms = make()
    c = faults.ModelCampaign(model=wl, array=SystolicArray(4, 4), trials=3, stratify="layer", chunk=2)
    run = faults.run_model_campaign(c, tmp_path / "c.db", executor="serial")
    assert run.complete and run.done == 3 * n_gemms
    rep = faults.model_campaign_report(tmp_path / "c.db")
    assert len(rep.tables["layer"]) == n_gemms and wl.label in rep.text()
