"""A whole model on a faulty chip: every GEMM through a PE array with a fault map,
the weight masks fault-aware pruning implies, and retraining with them held at zero.

The bridge's public hooks carry the chip: :func:`chip_faults` turns a GEMM function
``gemm(a (M, K), b (K, N), d (M, N)) -> D`` into one :class:`ReplaceGemmOutput` per
GEMM execution of a traced function, so ``trace.inject(chip_faults(trace.gemms, g))``
(:func:`run_on_chip`) or ``accelerated(fn, acc, faults=chip_faults(sites, g))(...)``
runs every GEMM, every tile and every fold of the model through ``g``.
:func:`array_gemm` is that function for a :class:`simulator.SystolicArray` /
:class:`simulator.TensorCoreArray` with a :class:`simulator.FaultMap` (the chip as
it is); a mitigation (``protection.Bypass``, ...) plugs in the same way, from a
layer that sees both packages.

Fault-aware pruning with retraining (FAP+T): :func:`weight_masks` says which elements
of each GEMM's B land on faulty PEs under the weight-stationary mapping
(:meth:`simulator.FaultMap.weight_mask`), :func:`param_masks` maps them onto a zoo
model's parameters (dense ``(in, out)`` weights and HWIO convolution kernels, in the
lowering's K order: input channel slowest, then window positions row-major), and
:func:`retrain_masked` fine-tunes the model in plain JAX with optax with those
weights held at zero.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from simulator import FaultMap, SystolicArray, TensorCoreArray, chip_gemm, get_profile

from ._accelerator import Accelerator
from ._bridge import accelerated
from ._faults import ReplaceGemmOutput
from ._train import load_digits
from ._zoo import get_model

__all__ = ["chip_faults", "array_gemm", "run_on_chip", "weight_masks", "param_masks", "retrain_masked", "chip_matmul",
           "finetune_on_chip"]


def chip_faults(sites, gemm) -> tuple:
    """One :class:`ReplaceGemmOutput` per GEMM site: each of its G 2-D GEMMs becomes
    ``gemm(a[g] (M, K), b[g] (K, N), d[g] (M, N))`` (operands rounded to the input
    format, d the fault-free result in the accumulator dtype; returns D (M, N))."""
    if not callable(gemm):
        raise TypeError(f"gemm must be callable, not {type(gemm).__name__}")

    def fn(call):
        return np.stack([np.asarray(gemm(call.a[g], call.b[g], call.d[g])) for g in range(call.site.groups)])

    return tuple(ReplaceGemmOutput(s.index, fn) for s in sites)


def array_gemm(array, fault_map: FaultMap, accelerator: Accelerator):
    """The GEMM function of a faulty chip: D of ``array.run(a, b, 0, fault_map=fault_map)``,
    bit for bit, computed by :func:`simulator.chip_gemm` (cycle-level work only on the
    output columns a faulty PE reaches; the rest is the fault-free ``d`` the bridge
    hands over, which is the array's fault-free D when the accelerator neither splits
    K nor applies block scales, and is recomputed otherwise).

    The array's profile must be the accelerator's (so the fault-free chip gives the
    accelerator's bits: ``Accelerator("systolic_fma", "fp16")`` for a SystolicArray).
    """
    _check_chip(array, fault_map, accelerator)
    fmt = "tf32" if accelerator.input_format == "tf32" else None

    d_is_golden = accelerator.split_k == 1 and accelerator.scaling_kind[0] != "block"

    def gemm(a, b, d):
        d = np.asarray(d)
        return chip_gemm(array, a, b, np.zeros(d.shape, d.dtype), fault_map=fault_map, input_format=fmt,
                         golden=d if d_is_golden else None)

    return gemm


def _check_chip(array, fault_map, accelerator) -> None:
    if not isinstance(array, (SystolicArray, TensorCoreArray)):
        raise TypeError(f"array must be a SystolicArray or TensorCoreArray, not {type(array).__name__}")
    if not isinstance(fault_map, FaultMap):
        raise TypeError(f"fault_map must be a FaultMap, not {type(fault_map).__name__}")
    if not isinstance(accelerator, Accelerator):
        raise TypeError(f"accelerator must be an Accelerator, not {type(accelerator).__name__}")
    if get_profile(array.profile).name != get_profile(accelerator.profile).name:
        raise ValueError(f"array profile must be the accelerator's {get_profile(accelerator.profile).name!r}, "
                         f"not {get_profile(array.profile).name!r}")
    fault_map.check(array, accelerator.input_format, accelerator.accumulator)


def chip_matmul(array, fault_map: FaultMap, accelerator: Accelerator):
    """A faulty chip as the JAX bridge's GEMM (``accelerated(fn, acc, matmul=...)``,
    ``Accelerator(engine="jax")``): ``matmul(a (G, M, K), b (G, K, N))`` returns D
    (G, M, N) in the accumulator dtype, each 2-D GEMM computed on the host by
    :func:`simulator.chip_gemm` (bit for bit ``array.run(a, b, 0, fault_map=...)``)
    through ``jax.pure_callback``.  So a jitted, vmapped or differentiated JAX program
    runs its forward pass on the faulty chip; the bridge's gradient is straight-through.
    The checks are :func:`array_gemm`'s."""
    _check_chip(array, fault_map, accelerator)
    fmt = "tf32" if accelerator.input_format == "tf32" else None
    acc_dtype = accelerator.acc_dtype

    def host(a, b):
        a, b = np.asarray(a), np.asarray(b)
        out = np.empty((a.shape[0], a.shape[1], b.shape[2]), acc_dtype)
        for g in range(a.shape[0]):
            out[g] = chip_gemm(array, a[g], b[g], np.zeros(out.shape[1:], acc_dtype), fault_map=fault_map,
                               input_format=fmt)
        return out

    def matmul(a, b):
        shape = jax.ShapeDtypeStruct((a.shape[0], a.shape[1], b.shape[2]), acc_dtype)
        return jax.pure_callback(host, shape, a, b, vmap_method="sequential")

    return matmul


def run_on_chip(trace, gemm, *, return_stats: bool = False):
    """The traced function's outputs with every GEMM computed by ``gemm`` (see
    :func:`chip_faults`; ``trace``: a :class:`GoldenTrace`, e.g.
    ``accelerated(model.apply, acc).trace(params, x)``)."""
    return trace.inject(chip_faults(trace.gemms, gemm), return_stats=return_stats)


def weight_masks(array, fault_map: FaultMap, shapes, *, input_format: str | None = None) -> tuple:
    """Per GEMM shape (K, N): a (K, N) bool mask, True where B's element sits on a
    faulty PE under the weight-stationary mapping (every fold)."""
    return tuple(fault_map.weight_mask(array, int(k), int(n), input_format=input_format) for k, n in shapes)


def param_masks(params: dict, array, fault_map: FaultMap, *, input_format: str | None = None,
                suffix: str = "/w") -> dict:
    """{name: bool mask of the param's shape} for the GEMM weights among ``params``
    (names ending in ``suffix``): a 2-D ``(in, out)`` dense weight is B itself; a 4-D
    HWIO kernel is B (C_in * H * W, O) in the lowering's K order.  True: held by a
    faulty PE (pruned by :class:`protection.Bypass`)."""
    out = {}
    for name, w in params.items():
        if not name.endswith(suffix):
            continue
        shape = tuple(np.shape(w))
        if len(shape) == 2:
            out[name] = fault_map.weight_mask(array, *shape, input_format=input_format)
        elif len(shape) == 4:
            H, W, Ci, O = shape
            m = fault_map.weight_mask(array, Ci * H * W, O, input_format=input_format)
            out[name] = m.reshape(Ci, H, W, O).transpose(1, 2, 0, 3)
        else:
            raise ValueError(f"params[{name!r}] must be a 2-D dense weight or a 4-D HWIO kernel, not shape {shape}")
    return out


def retrain_masked(name: str, params: dict, masks: dict, *, epochs: int = 40, lr: float = 3e-3, seed: int = 0,
                   batch: int = 64):
    """Fine-tune a zoo model on the digits training split with the masked weights held
    at zero (FAP+T): they start at zero, their gradients are dropped and every update
    is projected back (Adam, cosine decay, plain JAX + optax, native float32).

    Returns (params dict of float32 numpy arrays, seconds spent training).
    """
    model = get_model(name)
    x, y = load_digits("train")
    keep = {k: jnp.asarray(~masks[k], jnp.float32) if k in masks else None for k in params}
    for k, m in masks.items():
        if k not in params or np.shape(m) != np.shape(params[k]):
            raise ValueError(f"masks[{k!r}] must match a param's shape, not {np.shape(m)}")

    def project(p):
        return {k: v if keep[k] is None else v * keep[k] for k, v in p.items()}

    return _fine_tune(model.apply, x, y, project({k: jnp.asarray(v, jnp.float32) for k, v in params.items()}),
                      project, epochs=epochs, lr=lr, seed=seed, batch=batch)


def finetune_on_chip(name: str, params: dict, array, fault_map: FaultMap, accelerator: Accelerator, *,
                     epochs: int = 5, lr: float = 1e-3, seed: int = 0, batch: int = 64):
    """Fault-aware fine-tuning: train a zoo model with the faulty chip in the loop.

    Every forward pass runs each GEMM on the chip as it is (:func:`chip_matmul`: the
    fault map, no mitigation; operands rounded to the accelerator's input format), the
    backward pass is the bridge's straight-through gradient, and the update is Adam with
    cosine decay on the digits training split (plain JAX + optax).  No hardware
    change: the network learns around its chip's faults.  ``accelerator`` is used with
    ``engine="jax"`` (its profile must be the array's).

    Returns (params dict of float32 numpy arrays, seconds spent training).
    """
    if not isinstance(accelerator, Accelerator):
        raise TypeError(f"accelerator must be an Accelerator, not {type(accelerator).__name__}")
    acc = dataclasses.replace(accelerator, engine="jax")
    model = get_model(name)
    x, y = load_digits("train")
    on_chip = accelerated(model.apply, acc, matmul=chip_matmul(array, fault_map, acc))
    return _fine_tune(on_chip, x, y, {k: jnp.asarray(v, jnp.float32) for k, v in params.items()}, None,
                      epochs=epochs, lr=lr, seed=seed, batch=batch)


def _fine_tune(apply, x, y, p: dict, project, *, epochs: int, lr: float, seed: int, batch: int):
    """Adam (cosine decay) on softmax cross-entropy of ``apply(params, xb)``, minibatches
    of ``batch`` in a seeded order; ``project`` (or None) maps gradients and updated
    params; a step with a non-finite gradient is skipped.  Returns (params of float32
    numpy arrays, seconds)."""
    import optax

    project = project or (lambda q: q)
    steps = len(y) // batch
    opt = optax.adam(optax.cosine_decay_schedule(lr, max(1, epochs * steps)))
    state = opt.init(p)

    def loss_fn(q, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(apply(q, xb), yb).mean()

    @jax.jit
    def step(q, s, xb, yb):
        g = project(jax.grad(loss_fn)(q, xb, yb))
        upd, s2 = opt.update(g, s, q)
        q2 = project(optax.apply_updates(q, upd))
        # a step whose gradient is not finite (a faulty chip's inf/NaN reached the loss)
        # changes nothing, rather than turning every parameter into NaN
        ok = jnp.all(jnp.array([jnp.all(jnp.isfinite(v)) for v in jax.tree_util.tree_leaves(g)]))
        keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
        return keep(q2, q), keep(s2, s)

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = rng.permutation(len(y))
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            p, state = step(p, state, x[idx], y[idx])
    p = {k: np.asarray(v, np.float32) for k, v in p.items()}
    return p, time.perf_counter() - t0
