"""Workloads: a model, its parameters, its data and what counts as a wrong answer.

A :class:`Workload` is what a user hands a campaign: ``apply(params, inputs)`` any
JAX function (plain ``jax.numpy``, Flax linen / nnx, Equinox), its parameters (any
pytree), the evaluation inputs (an array or a pytree of arrays with a leading batch
axis B), optional labels (B, ...) and an *outcome*, the rule that says which examples
a fault made wrong::

    wl = Workload(lambda p, x: jax.nn.relu(x @ p["w1"]) @ p["w2"], params, x, labels=y)
    wl.critical(golden, faulty)            # (B,) bool: examples the fault made wrong

Outcomes (:data:`WORKLOAD_OUTCOMES`), on the output (B, ...) of a fault-free run
(``golden``) and a faulty one (``faulty``):

* ``"top1"``: classification, the last axis holds the class scores.  With labels, an
  example is critical when the golden top-1 is its label and the faulty one is not;
  without labels, when the faulty top-1 differs from the golden top-1.
* ``"topk:K"``: with labels, the label is among the golden top-K and not among the
  faulty top-K; without labels, the golden top-1 is not among the faulty top-K.
* ``"retrieval"``: rows of the output (B, D) are embeddings; each example retrieves its
  cosine nearest neighbour among the other B - 1.  With labels, critical when the
  golden neighbour has the example's label and the faulty one does not; without,
  when the neighbour changed.  An output (B, 2, D) holds query/passage pairs
  (``out[i, 0]`` the query, ``out[i, 1]`` its passage): query i retrieves the passage
  of highest cosine similarity among the B passages; critical when that top-1
  passage changed; :meth:`Workload.correct` counts queries whose top-1 is their own
  passage (labels are not used).
* ``"tolerance:REL"``: regression; critical when the example's largest absolute error
  exceeds REL times the largest absolute golden value of that example.
* a callable ``fn(golden, faulty, labels) -> (B,) bool`` (numpy arrays; labels None
  when not given).

A non-finite faulty value makes its example critical under every built-in outcome.
:attr:`Workload.digest` (SHA-256 over the parameters', inputs' and labels' bytes,
shapes and dtypes) tells two workloads' data apart, so a stored campaign is never
resumed or reported against other data.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np

from ._pretrained import load_pretrained
from ._train import load_digits, load_params
from ._zoo import MODELS, get_model

__all__ = ["Workload", "WORKLOAD_OUTCOMES", "get_workload", "load_workload", "SHIPPED_BATCH", "WORKLOADS",
           "minilm_retrieval", "MODELS_DIR_ENV"]

#: Built-in outcomes (``"topk:K"`` with an int K >= 1, ``"tolerance:REL"`` with a float REL > 0).
WORKLOAD_OUTCOMES = ("top1", "topk:K", "retrieval", "tolerance:REL")
#: Images of a shipped model's workload by default (the first of the digits test split).
SHIPPED_BATCH = 256
#: Environment variable naming the directory of real models and data.
MODELS_DIR_ENV = "GEMMFI_MODELS_DIR"
_DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "models"
_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _parse_outcome(outcome):
    """(kind, parameter) of a built-in outcome string, or ("callable", fn)."""
    if callable(outcome):
        return "callable", outcome
    if not isinstance(outcome, str):
        raise TypeError(f"outcome must be a str or a callable, not {type(outcome).__name__}")
    kind, sep, arg = outcome.partition(":")
    if kind in ("top1", "retrieval") and not sep:
        return kind, None
    if kind == "topk" and sep:
        try:
            k = int(arg)
        except ValueError:
            k = 0
        if k >= 1 and str(k) == arg:
            return kind, k
    if kind == "tolerance" and sep:
        try:
            rel = float(arg)
        except ValueError:
            rel = -1.0
        if rel > 0 and np.isfinite(rel):
            return kind, rel
    raise ValueError(f"outcome must be one of {list(WORKLOAD_OUTCOMES)} (K an int >= 1, REL a float > 0) "
                     f"or a callable, not {outcome!r}")


@dataclass(frozen=True, eq=False)
class Workload:
    """A model with its data and outcome rule (see the module docstring).

    Attributes:
        apply: ``apply(params, inputs) -> output``, a JAX function; the output is an
            array with the leading batch axis (B, ...).
        params: any pytree (dict of arrays, Flax variables, an nnx state, an Equinox
            module); non-array leaves are static.
        inputs: an array or a pytree of arrays, each with the same leading batch axis B >= 1.
        labels: None or an array (B, ...) (int class labels for ``"top1"``/``"topk"``).
        outcome: a :data:`WORKLOAD_OUTCOMES` string or a callable (see the module).
        name: a label for reports (None: ``apply``'s name).
    """

    apply: Callable
    params: Any
    inputs: Any
    labels: Any = None
    outcome: Any = "top1"
    name: str | None = None

    def __post_init__(self):
        if not callable(self.apply):
            raise TypeError(f"apply must be callable, not {type(self.apply).__name__}")
        leaves = jax.tree_util.tree_leaves(self.inputs)
        if not leaves or not all(_is_array(x) for x in leaves):
            raise TypeError(f"inputs must be an array or a pytree of arrays, not {type(self.inputs).__name__}")
        sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
        if None in sizes or len(sizes) != 1:
            raise ValueError(f"inputs must all have the same leading batch axis, not shapes "
                             f"{[np.shape(x) for x in leaves]}")
        (b,) = sizes
        if b < 1:
            raise ValueError(f"inputs must hold at least one example, not {b}")
        if self.labels is not None:
            if not _is_array(self.labels):
                raise TypeError(f"labels must be an array or None, not {type(self.labels).__name__}")
            if np.ndim(self.labels) < 1 or np.shape(self.labels)[0] != b:
                raise ValueError(f"labels must have the inputs' batch size {b} as leading axis, not shape "
                                 f"{np.shape(self.labels)}")
        kind, arg = _parse_outcome(self.outcome)
        if kind == "retrieval" and b < 2:
            raise ValueError(f"inputs must hold at least 2 examples for outcome 'retrieval', not {b}")
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a str or None, not {type(self.name).__name__}")
        object.__setattr__(self, "_rule", (kind, arg))

    # ---- derived ---------------------------------------------------------------------
    @property
    def batch(self) -> int:
        """B, the number of examples."""
        return int(np.shape(jax.tree_util.tree_leaves(self.inputs)[0])[0])

    @property
    def label(self) -> str:
        """:attr:`name`, or ``apply``'s name."""
        return self.name or getattr(self.apply, "__name__", type(self.apply).__name__)

    @property
    def outcome_name(self) -> str:
        """The outcome string, or ``"callable:<name>"``."""
        if isinstance(self.outcome, str):
            return self.outcome
        return f"callable:{getattr(self.outcome, '__qualname__', type(self.outcome).__name__)}"

    @property
    def digest(self) -> str:
        """SHA-256 (hex, first 16 digits) over every array leaf of params, inputs and
        labels (tree path, shape, dtype, bytes) and the other leaves' values or type names."""
        d = self.__dict__.get("_digest")
        if d is None:
            h = hashlib.sha256()
            for part, tree in (("params", self.params), ("inputs", self.inputs), ("labels", self.labels)):
                h.update(part.encode())
                for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
                    h.update(jax.tree_util.keystr(path).encode())
                    if _is_array(x):
                        a = np.ascontiguousarray(np.asarray(x))
                        h.update(f"{a.dtype.name}{a.shape}".encode())
                        h.update(a.view(np.uint8).reshape(-1).tobytes())
                    elif isinstance(x, _SCALARS):
                        h.update(repr(x).encode())
                    else:
                        h.update(f"<{type(x).__module__}.{getattr(x, '__qualname__', type(x).__qualname__)}>".encode())
            d = h.hexdigest()[:16]
            object.__setattr__(self, "_digest", d)
        return d

    def slice_inputs(self, lo: int, hi: int):
        """The inputs of examples [lo, hi) (same pytree)."""
        return jax.tree_util.tree_map(lambda x: x[lo:hi], self.inputs)

    def take(self, n: int) -> "Workload":
        """The workload on its first ``n`` examples (1 <= n <= :attr:`batch`)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if not 1 <= n <= self.batch:
            raise ValueError(f"n must be in [1, {self.batch}], not {n}")
        if n == self.batch:
            return self
        labels = None if self.labels is None else self.labels[:n]
        return Workload(self.apply, self.params, self.slice_inputs(0, n), labels, self.outcome, self.name)

    # ---- outcomes --------------------------------------------------------------------
    def critical(self, golden, faulty) -> np.ndarray:
        """(B,) bool: the examples whose faulty output is wrong by :attr:`outcome`.

        Args:
            golden, faulty: outputs (B, ...) of the fault-free and the faulty run.
        """
        g, f = np.asarray(golden), np.asarray(faulty)
        B = g.shape[0]
        labels = None if self.labels is None else np.asarray(self.labels)
        kind, arg = self._rule
        if kind == "callable":
            out = np.asarray(arg(g, f, labels))
            if out.shape != (B,) or out.dtype != np.bool_:
                raise ValueError(f"outcome must return a (B,) = ({B},) bool array, not {out.dtype} {out.shape}")
            return out
        bad = ~np.isfinite(f.astype(np.float64)).reshape(B, -1).all(axis=1)
        if kind == "tolerance":
            g64, f64 = g.astype(np.float64).reshape(B, -1), f.astype(np.float64).reshape(B, -1)
            with np.errstate(invalid="ignore", over="ignore"):
                err = np.abs(f64 - g64).max(axis=1)
                scale = np.abs(g64).max(axis=1)
                crit = err > arg * scale
            return crit | bad
        if kind == "retrieval" and _paired(g):
            return (_top_passage(g) != _top_passage(f)) | bad
        if labels is not None:
            ok_g, ok_f = self._correct(g, labels), self._correct(f, labels)
            return (ok_g & ~ok_f) | bad
        if kind == "retrieval":
            changed = _nearest(g) != _nearest(f)
        elif kind == "top1":
            changed = g.argmax(axis=-1) != f.argmax(axis=-1)
        else:  # topk: the golden top-1 is not among the faulty top-K
            changed = ~(_topk(f, arg) == g.argmax(axis=-1)[..., None]).any(axis=-1)
        return changed.reshape(B, -1).any(axis=1) | bad

    def correct(self, output) -> int | None:
        """Examples the output gets right against the labels by the outcome (None
        without labels, or for ``tolerance`` and callable outcomes)."""
        kind, _ = self._rule
        if kind == "retrieval" and _paired(np.asarray(output)):
            out = np.asarray(output)
            return int((_top_passage(out) == np.arange(out.shape[0])).sum())
        if self.labels is None or kind in ("tolerance", "callable"):
            return None
        return int(self._correct(np.asarray(output), np.asarray(self.labels)).sum())

    def _correct(self, out: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(B,) bool: per example, whether ``out`` gets its label right."""
        kind, arg = self._rule
        B = out.shape[0]
        if kind == "retrieval":
            ok = labels[_nearest(out)] == labels
        elif kind == "top1":
            ok = out.argmax(axis=-1) == labels
        else:
            ok = (_topk(out, arg) == labels[..., None]).any(axis=-1)
        return np.asarray(ok).reshape(B, -1).all(axis=1)


    def embedding_distance(self, golden, faulty) -> np.ndarray:
        """(B,) float64: per example, the largest cosine distance 1 - cos(g, f) between
        a golden and the faulty embedding (rows of (B, D), or both of a (B, 2, D)
        pair); 2.0 where the faulty embedding is not finite or zero."""
        g = np.asarray(golden, np.float64)
        f = np.asarray(faulty, np.float64)
        B = g.shape[0]
        g = g.reshape(B, -1, g.shape[-1])
        f = f.reshape(B, -1, f.shape[-1])
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            cos = (g * f).sum(-1) / (np.linalg.norm(g, axis=-1) * np.linalg.norm(f, axis=-1))
        dist = np.where(np.isfinite(cos), 1.0 - cos, 2.0)
        return dist.max(axis=1)


def _paired(out: np.ndarray) -> bool:
    return out.ndim == 3 and out.shape[1] == 2


def _top_passage(out: np.ndarray) -> np.ndarray:
    """(B,) index of each query's most cosine-similar passage; out (B, 2, D)."""
    q = out[:, 0].astype(np.float64)
    p = out[:, 1].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        s = q @ p.T
    s[~np.isfinite(s)] = -np.inf
    return s.argmax(axis=1)


def _nearest(out: np.ndarray) -> np.ndarray:
    """(B,) index of each row's cosine nearest neighbour among the other rows."""
    B = out.shape[0]
    x = out.astype(np.float64).reshape(B, -1)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = x @ x.T
    s[~np.isfinite(s)] = -np.inf
    np.fill_diagonal(s, -np.inf)
    return s.argmax(axis=1)


def _topk(out: np.ndarray, k: int) -> np.ndarray:
    """(..., k) indices of the k largest scores of the last axis (ties: lower index first)."""
    k = min(k, out.shape[-1])
    return np.argsort(-out.astype(np.float64), axis=-1, kind="stable")[..., :k]


def _models_dir(path) -> Path:
    """The directory holding the real models and data (see :func:`minilm_retrieval`)."""
    if path is None:
        env = os.environ.get(MODELS_DIR_ENV)
        if env:
            path = env
        elif _DEFAULT_MODELS_DIR.is_dir():
            path = _DEFAULT_MODELS_DIR
        else:
            raise FileNotFoundError(
                f"the minilm-retrieval workload needs a directory holding all-MiniLM-L6-v2/ (from the Hugging Face "
                f"hub: sentence-transformers/all-MiniLM-L6-v2) and retrieval_pairs.jsonl: pass path=, or set "
                f"{MODELS_DIR_ENV}; the default {_DEFAULT_MODELS_DIR} does not exist")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str, os.PathLike or None, not {type(path).__name__}")
    root = Path(path)
    for need in ("all-MiniLM-L6-v2", "retrieval_pairs.jsonl"):
        if not (root / need).exists():
            raise FileNotFoundError(f"{root / need} is missing: the minilm-retrieval workload needs "
                                    f"all-MiniLM-L6-v2/ and retrieval_pairs.jsonl in {root}")
    return root


@functools.lru_cache(maxsize=4)
def _minilm(root: str):
    model = load_pretrained(Path(root) / "all-MiniLM-L6-v2")
    pairs = []
    with open(Path(root) / "retrieval_pairs.jsonl", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if line.strip():
                rec = json.loads(line)
                if not isinstance(rec, dict) or not isinstance(rec.get("query"), str) \
                        or not isinstance(rec.get("passage"), str):
                    raise ValueError(f"{Path(root) / 'retrieval_pairs.jsonl'} line {i + 1} must be an object with "
                                     f"str fields 'query' and 'passage'")
                pairs.append((rec["query"], rec["passage"]))
    return model, tuple(pairs)


def minilm_retrieval(n: int = 256, path=None) -> Workload:
    """The built-in ``"minilm-retrieval"`` workload: all-MiniLM-L6-v2
    (:func:`load_pretrained`) on the first ``n`` query/passage pairs of
    ``retrieval_pairs.jsonl``.

    Inputs: ``{"token_ids", "attention_mask"}``, each (n, 2, T) int32 (row i: query i,
    passage i; T the longest of the n pairs' 2n texts); the output is (n, 2, 384) float32
    L2-normalised embeddings; outcome ``"retrieval"`` on pairs (critical: a query's top-1
    passage among the n changed; :meth:`Workload.correct`: queries whose top-1 is their
    own passage; :meth:`Workload.embedding_distance`: cosine distance of the faulty
    embeddings).  The encoder runs once on the 2n texts.

    Args:
        n: pairs, 2 <= n <= the number of pairs in the file (256).
        path: the directory holding ``all-MiniLM-L6-v2/`` and ``retrieval_pairs.jsonl``;
            None: the environment variable ``GEMMFI_MODELS_DIR``, else ``../shared/models``
            next to the repository when it exists.
    Raises:
        FileNotFoundError: no such directory or files (the message says where it looked).
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    root = _models_dir(path)
    model, pairs = _minilm(str(root.resolve()))
    if not 2 <= n <= len(pairs):
        raise ValueError(f"n must be in [2, {len(pairs)}], not {n}")
    texts = [t for q, p in pairs[:n] for t in (q, p)]
    ids, mask = model.tokenize(texts)
    T = ids.shape[1]
    inputs = {"token_ids": ids.reshape(n, 2, T), "attention_mask": mask.reshape(n, 2, T)}
    enc = model.apply

    def minilm_retrieval_apply(params, inputs):
        ids, mask = inputs["token_ids"], inputs["attention_mask"]
        B, _, T = ids.shape
        emb = enc(params, ids.reshape(2 * B, T), mask.reshape(2 * B, T))
        return emb.reshape(B, 2, emb.shape[-1])

    return Workload(minilm_retrieval_apply, model.params, inputs, None, "retrieval", "minilm-retrieval")


#: Built-in workloads beyond :data:`MODELS`: name -> factory ``fn(n=..., path=None)``.
WORKLOADS = {"minilm-retrieval": minilm_retrieval}


def get_workload(name: str, n: int | None = None, path=None) -> Workload:
    """A shipped model of :data:`MODELS` as a workload: its shipped weights on the first
    ``n`` (1..360, default :data:`SHIPPED_BATCH`) images of the digits test split with
    their labels, outcome ``"top1"``; or a built-in workload of :data:`WORKLOADS`
    (``"minilm-retrieval"``: :func:`minilm_retrieval` on ``n`` pairs, default 256, data
    from ``path``)."""
    if isinstance(name, str) and name in WORKLOADS:
        return WORKLOADS[name](**({} if n is None else {"n": n}), path=path)
    if path is not None:
        raise ValueError(f"path must be None for a shipped model, not {path!r}")
    if n is None:
        n = SHIPPED_BATCH
    model = get_model(name)
    x, y = load_digits("test")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    if not 1 <= n <= len(y):
        raise ValueError(f"n must be in [1, {len(y)}], not {n}")
    return Workload(model.apply, load_params(name), x[:n], y[:n], "top1", name)


def load_workload(ref: str) -> Workload:
    """The workload a factory returns: ``ref`` is ``"module:function"`` (the module
    importable, e.g. on ``PYTHONPATH``) naming a function of no arguments that returns
    a :class:`Workload`; or a :data:`MODELS` name (:func:`get_workload`)."""
    if not isinstance(ref, str):
        raise TypeError(f"workload reference must be a str, not {type(ref).__name__}")
    if ref in MODELS or ref in WORKLOADS:
        return get_workload(ref)
    mod, sep, attr = ref.partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"workload reference must be a model name ({sorted(MODELS)}) or 'module:function', "
                         f"not {ref!r}")
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"workload reference must name an importable function 'module:function', not {ref!r} "
                         f"({type(e).__name__}: {e})") from e
    if not callable(fn):
        raise TypeError(f"workload factory {ref!r} must be callable, not {type(fn).__name__}")
    wl = fn()
    if not isinstance(wl, Workload):
        raise TypeError(f"workload factory {ref!r} must return a models.Workload, not {type(wl).__name__}")
    return wl
