"""Digits data, deterministic training with optax, shipped weights, accuracy.

Data: scikit-learn's bundled 8x8 digits (1797 images, no download), pixels / 16 as
float32, split by a fixed permutation (``numpy.random.default_rng(0)``) into 1437
training and 360 test images.
"""
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np

from ._accelerator import Accelerator
from ._bridge import accelerated
from ._zoo import MODELS, get_model

__all__ = ["load_digits", "train", "load_params", "save_params", "predict", "accuracy", "accuracy_table",
           "WEIGHTS_DIR", "TRAIN_SETTINGS", "retrain_all", "TABLE_FORMATS"]

#: Where the shipped weights live (``<model>.npz``).
WEIGHTS_DIR = Path(__file__).parent / "weights"
_N_TEST = 360

#: Per model: (seed, epochs, learning rate); batch size 64, Adam, cosine decay.
TRAIN_SETTINGS = MappingProxyType({"mlp": (0, 40, 3e-3), "cnn": (0, 40, 3e-3), "transformer": (0, 80, 2e-3)})


def load_digits(split: str = "test"):
    """The digits split as (x (n, 64) float32 in [0, 1], y (n,) int32).

    ``split``: ``"train"`` (1437 images) or ``"test"`` (360 images).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(len(y))
    idx = perm[-_N_TEST:] if split == "test" else perm[:-_N_TEST]
    return x[idx], y[idx]


def train(name: str, *, seed: int | None = None, epochs: int | None = None, lr: float | None = None,
          verbose: bool = False) -> dict:
    """Train a model from scratch, deterministically (same seed, same params on a
    given machine and JAX version).

    Returns the params dict (float32 numpy arrays).  Defaults from
    :data:`TRAIN_SETTINGS`.
    """
    import optax

    model = get_model(name)
    s0, e0, lr0 = TRAIN_SETTINGS[name]
    seed = s0 if seed is None else seed
    epochs = e0 if epochs is None else epochs
    lr = lr0 if lr is None else lr
    x, y = load_digits("train")
    batch = 64
    steps_per_epoch = len(y) // batch
    opt = optax.adamw(optax.cosine_decay_schedule(lr, epochs * steps_per_epoch), weight_decay=1e-4)
    params = model.init(jax.random.key(seed))
    state = opt.init(params)

    def loss_fn(p, xb, yb):
        logits = model.apply(p, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def step(p, s, xb, yb):
        loss, g = jax.value_and_grad(loss_fn)(p, xb, yb)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    rng = np.random.default_rng(seed)
    for ep in range(epochs):
        perm = rng.permutation(len(y))
        for i in range(steps_per_epoch):
            idx = perm[i * batch:(i + 1) * batch]
            params, state, loss = step(params, state, x[idx], y[idx])
        if verbose:
            print(f"{name} epoch {ep + 1}/{epochs} loss {float(loss):.4f}")
    return {k: np.asarray(v, np.float32) for k, v in params.items()}


def save_params(name: str, params: dict, directory=None) -> Path:
    """Write params to ``<directory>/<name>.npz`` (compressed); returns the path."""
    path = Path(directory or WEIGHTS_DIR) / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **params)
    return path


def load_params(name: str, directory=None) -> dict:
    """The shipped (or given directory's) params of a model, as jax arrays."""
    get_model(name)
    path = Path(directory or WEIGHTS_DIR) / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"no weights at {path}; run models.retrain_all() or models.train({name!r})")
    with np.load(path) as z:
        return {k: jnp.asarray(z[k]) for k in z.files}


def retrain_all(directory=None, verbose: bool = False) -> dict:
    """Retrain every model with :data:`TRAIN_SETTINGS` and save the weights."""
    return {n: save_params(n, train(n, verbose=verbose), directory) for n in MODELS}


def predict(name: str, x, accelerator: Accelerator | None = None, params=None) -> np.ndarray:
    """Logits (n, 10) float32 of a model on images x (n, 64): natively in float32
    when ``accelerator`` is None, else with every GEMM on the simulated accelerator."""
    model = get_model(name)
    params = load_params(name) if params is None else params
    fn = model.apply if accelerator is None else accelerated(model.apply, accelerator)
    return np.asarray(fn(params, jnp.asarray(x)))


def accuracy(name: str, accelerator: Accelerator | None = None, params=None, n: int | None = None) -> float:
    """Top-1 accuracy on the (first ``n`` of the) 360 test images."""
    x, y = load_digits("test")
    if n is not None:
        x, y = x[:n], y[:n]
    return float((predict(name, x, accelerator, params).argmax(-1) == y).mean())


#: Columns of :func:`accuracy_table`: label -> accelerator (None: native float32).
TABLE_FORMATS = MappingProxyType({
    "fp32": None,
    "fp16": Accelerator("hopper", "fp16"),
    "bf16": Accelerator("hopper", "bf16"),
    "e4m3": Accelerator("hopper", "e4m3"),
    "e5m2": Accelerator("hopper", "e5m2"),
})


def accuracy_table(models=None, formats=None) -> dict:
    """{model: {format label: test accuracy}} for the shipped weights.

    ``formats`` maps column labels to accelerators (None = native float32); default
    :data:`TABLE_FORMATS` (hopper profile, fp32 accumulation).
    """
    models = list(MODELS) if models is None else list(models)
    formats = TABLE_FORMATS if formats is None else formats
    return {m: {lab: accuracy(m, acc) for lab, acc in formats.items()} for m in models}

