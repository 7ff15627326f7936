"""Three small digit classifiers in plain JAX: an MLP, a CNN and a transformer.

Every model takes images as (batch, 64) float32 in [0, 1] (scikit-learn's 8x8
digits, row-major, divided by 16) and returns logits (batch, 10) float32.  Parameters
are flat dicts ``{"layer/param": array}``, so they save to and load from ``.npz``
as they are.  Each layer runs inside ``jax.named_scope(layer)``, so the bridge's
:class:`GemmSite` names read ``"conv1/conv_general_dilated"``, ``"block0/attn/qk/..."``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

__all__ = ["Model", "MODELS", "get_model"]


@dataclass(frozen=True)
class Model:
    """A classifier as two pure functions.

    Attributes:
        name: ``"mlp"``, ``"cnn"`` or ``"transformer"``.
        init: ``init(key) -> params`` (dict of float32 arrays).
        apply: ``apply(params, x) -> logits``; x (B, 64) float32, logits (B, 10) float32.
        description: one line.
    """

    name: str
    init: Callable
    apply: Callable
    description: str = ""


def _dense_init(key, n_in, n_out):
    w = jax.random.normal(key, (n_in, n_out), jnp.float32) * math.sqrt(2.0 / n_in)
    return w, jnp.zeros((n_out,), jnp.float32)


def _dense(params, name, x):
    with jax.named_scope(name.rsplit("/", 1)[-1]):  # inside a block's scope: "block0/qkv"
        return x @ params[f"{name}/w"] + params[f"{name}/b"]


# ---- MLP ------------------------------------------------------------------------
_MLP = (("fc1", 64, 128), ("fc2", 128, 64), ("fc3", 64, 10))


def _mlp_init(key):
    params = {}
    for k, (name, i, o) in zip(jax.random.split(key, len(_MLP)), _MLP):
        params[f"{name}/w"], params[f"{name}/b"] = _dense_init(k, i, o)
    return params


def _mlp_apply(params, x):
    h = jax.nn.relu(_dense(params, "fc1", x))
    h = jax.nn.relu(_dense(params, "fc2", h))
    return _dense(params, "fc3", h)


# ---- CNN ------------------------------------------------------------------------
def _cnn_init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "conv1/w": jax.random.normal(k1, (3, 3, 1, 16), jnp.float32) * math.sqrt(2.0 / 9),
        "conv1/b": jnp.zeros((16,), jnp.float32),
        "conv2/w": jax.random.normal(k2, (3, 3, 16, 32), jnp.float32) * math.sqrt(2.0 / 144),
        "conv2/b": jnp.zeros((32,), jnp.float32),
        **dict(zip(("fc/w", "fc/b"), _dense_init(k3, 2 * 2 * 32, 10))),
    }


def _conv(params, name, x):
    with jax.named_scope(name):
        y = jax.lax.conv_general_dilated(x, params[f"{name}/w"], (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + params[f"{name}/b"]


def _maxpool2(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _cnn_apply(params, x):
    h = x.reshape(-1, 8, 8, 1)
    h = _maxpool2(jax.nn.relu(_conv(params, "conv1", h)))  # (B, 4, 4, 16)
    h = _maxpool2(jax.nn.relu(_conv(params, "conv2", h)))  # (B, 2, 2, 32)
    return _dense(params, "fc", h.reshape(h.shape[0], -1))


# ---- transformer ------------------------------------------------------------------
_D, _HEADS, _FF, _LAYERS = 32, 2, 64, 2


def _tf_init(key):
    keys = iter(jax.random.split(key, 4 + 4 * _LAYERS))
    p = {}
    p["embed/w"], p["embed/b"] = _dense_init(next(keys), 8, _D)
    p["pos"] = jax.random.normal(next(keys), (8, _D), jnp.float32) * 0.02
    for i in range(_LAYERS):
        b = f"block{i}"
        for ln in ("ln1", "ln2"):
            p[f"{b}/{ln}/scale"], p[f"{b}/{ln}/bias"] = jnp.ones((_D,)), jnp.zeros((_D,))
        p[f"{b}/qkv/w"], p[f"{b}/qkv/b"] = _dense_init(next(keys), _D, 3 * _D)
        p[f"{b}/proj/w"], p[f"{b}/proj/b"] = _dense_init(next(keys), _D, _D)
        p[f"{b}/ff1/w"], p[f"{b}/ff1/b"] = _dense_init(next(keys), _D, _FF)
        p[f"{b}/ff2/w"], p[f"{b}/ff2/b"] = _dense_init(next(keys), _FF, _D)
    p["ln_f/scale"], p["ln_f/bias"] = jnp.ones((_D,)), jnp.zeros((_D,))
    p["head/w"], p["head/b"] = _dense_init(next(keys), _D, 10)
    return p


def _layernorm(params, name, x):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * params[f"{name}/scale"] + params[f"{name}/bias"]


def _tf_apply(params, x):
    B = x.shape[0]
    h = _dense(params, "embed", x.reshape(B, 8, 8)) + params["pos"]  # tokens = image rows
    dh = _D // _HEADS
    for i in range(_LAYERS):
        b = f"block{i}"
        with jax.named_scope(b):
            y = _layernorm(params, f"{b}/ln1", h)
            qkv = _dense(params, f"{b}/qkv", y).reshape(B, 8, 3, _HEADS, dh)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, H, dh)
            with jax.named_scope("attn"):
                s = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(dh)
                a = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(s, axis=-1), v).reshape(B, 8, _D)
            h = h + _dense(params, f"{b}/proj", a)
            y = _layernorm(params, f"{b}/ln2", h)
            h = h + _dense(params, f"{b}/ff2", jax.nn.gelu(_dense(params, f"{b}/ff1", y)))
    h = _layernorm(params, "ln_f", h).mean(axis=1)
    return _dense(params, "head", h)


#: The shipped models by name (read-only).
MODELS: Mapping[str, Model] = MappingProxyType({
    m.name: m for m in (
        Model("mlp", _mlp_init, _mlp_apply, "64-128-64-10 ReLU MLP"),
        Model("cnn", _cnn_init, _cnn_apply,
              "conv3x3(16)-relu-maxpool-conv3x3(32)-relu-maxpool-dense(10), NHWC"),
        Model("transformer", _tf_init, _tf_apply,
              f"rows as 8 tokens, d={_D}, {_HEADS} heads, {_LAYERS} pre-LN blocks, ff={_FF}, mean pool"),
    )
})


def get_model(name) -> Model:
    """A model of :data:`MODELS` by name."""
    if not isinstance(name, str):
        raise TypeError(f"model must be a str, not {type(name).__name__}")
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, not {name!r}")
    return MODELS[name]
