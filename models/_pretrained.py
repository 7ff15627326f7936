"""Pretrained BERT-family sentence encoders from Hugging Face checkpoint directories.

:func:`load_pretrained` reads a directory as the Hugging Face hub publishes it
(``config.json``, ``model.safetensors``, ``tokenizer.json``, and for a
sentence-transformers model ``modules.json`` and ``1_Pooling/config.json``) with the
``safetensors`` (numpy loader) and ``tokenizers`` packages, no PyTorch, and returns a
:class:`PretrainedModel`: the encoder written here in plain ``jax.numpy``, so that the
bridge (:func:`models.accelerated`) sees every GEMM as a ``dot_general``::

    model = load_pretrained("all-MiniLM-L6-v2")          # a local directory
    ids, mask = model.tokenize(["a query", "a passage"])  # (B, T) int32 each
    emb = jax.jit(model.apply)(model.params, ids, mask)  # (B, 384) float32, unit rows
    emb_acc = accelerated(model.apply, Accelerator("hopper", "fp16"))(model.params, ids, mask)

The encoder runs every layer inside ``jax.named_scope``, so the bridge's GEMM sites
read ``"layer0/attention/query/dot_general"``, ``".../attention/scores/..."``,
``".../attention/context/..."``, ``".../attention/output/..."``, ``"layer0/ffn/up/..."``,
``"layer0/ffn/down/..."``.  The attention's two batched matmuls stay one
``dot_general`` each, with (batch, head) as batch dimensions.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

__all__ = ["BertConfig", "PretrainedModel", "load_pretrained", "ACTIVATIONS", "POOLING_MODES"]

# hidden_act names as transformers' ACT2FN spells them -> the function (float32 in, float32 out).
# BERT's "gelu" is the exact erf form; "gelu_new" / "gelu_pytorch_tanh" the tanh approximation.
ACTIVATIONS: dict[str, Callable] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}

# sentence-transformers Pooling modes this loader implements (exactly one may be set).
POOLING_MODES = ("mean", "cls", "max")

_BERT_MODEL_TYPES = ("bert",)
_ST_TRANSFORMER = "sentence_transformers.models.Transformer"
_ST_POOLING = "sentence_transformers.models.Pooling"
_ST_NORMALIZE = "sentence_transformers.models.Normalize"
_HIGHEST = jax.lax.Precision.HIGHEST  # float32 GEMMs on every backend (no TF32/bf16 passes)


# ---- configuration ------------------------------------------------------------------
@dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT ``config.json`` the encoder uses (validated).

    Attributes:
        vocab_size, hidden_size, num_hidden_layers, num_attention_heads,
        intermediate_size, max_position_embeddings, type_vocab_size: ints >= 1;
            hidden_size a multiple of num_attention_heads.
        hidden_act: a key of :data:`ACTIVATIONS`.
        layer_norm_eps: float > 0 (added to the variance).
        pad_token_id: int.
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    hidden_act: str
    layer_norm_eps: float
    pad_token_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"config.json field {name!r} must be an int >= 1, not {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"config.json field 'hidden_size' must be a multiple of num_attention_heads "
                             f"({self.num_attention_heads}), not {self.hidden_size}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"config.json field 'hidden_act' must be one of {sorted(ACTIVATIONS)}, "
                             f"not {self.hidden_act!r}")
        if isinstance(self.layer_norm_eps, bool) or not isinstance(self.layer_norm_eps, (int, float)) \
                or not self.layer_norm_eps > 0:
            raise ValueError(f"config.json field 'layer_norm_eps' must be a float > 0, not {self.layer_norm_eps!r}")
        if not isinstance(self.pad_token_id, int) or isinstance(self.pad_token_id, bool):
            raise ValueError(f"config.json field 'pad_token_id' must be an int, not {self.pad_token_id!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_json(cls, cfg: dict, where: Path) -> "BertConfig":
        """Validate a parsed ``config.json`` as a BERT encoder; ``where`` names the file in errors."""
        model_type = cfg.get("model_type")
        if model_type not in _BERT_MODEL_TYPES:
            raise ValueError(f"{where}: field 'model_type' must be one of {list(_BERT_MODEL_TYPES)} "
                             f"(a BERT-family encoder), not {model_type!r}")
        archs = cfg.get("architectures")
        if archs is not None:
            if not isinstance(archs, list) or not all(isinstance(a, str) and a.startswith("Bert") for a in archs):
                raise ValueError(f"{where}: field 'architectures' must list BERT architectures (Bert*), not {archs!r}")
        pos = cfg.get("position_embedding_type", "absolute")
        if pos != "absolute":
            raise ValueError(f"{where}: field 'position_embedding_type' must be 'absolute', not {pos!r}")
        if cfg.get("is_decoder", False) or cfg.get("add_cross_attention", False):
            raise ValueError(f"{where}: fields 'is_decoder' / 'add_cross_attention' must be false for an encoder")
        kw = {}
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "hidden_act", "layer_norm_eps"):
            if name not in cfg:
                raise ValueError(f"{where}: field {name!r} is missing")
            kw[name] = cfg[name]
        kw["pad_token_id"] = cfg.get("pad_token_id", 0)
        return cls(**kw)


# ---- the encoder (plain jax.numpy) --------------------------------------------------
def _layer_norm(x, g, b, eps):
    # Biased variance, eps inside the square root: torch.nn.LayerNorm.
    mu = jnp.mean(x, axis=-1, keepdims=True)
    xc = x - mu
    var = jnp.mean(xc * xc, axis=-1, keepdims=True)
    return xc * jax.lax.rsqrt(var + eps) * g + b


def _dense(params, name, x):
    with jax.named_scope(name.rsplit("/", 1)[-1]):
        return jnp.matmul(x, params[f"{name}/w"], precision=_HIGHEST) + params[f"{name}/b"]


def _encoder_layer(cfg: BertConfig, params, i, h, key_mask):
    """One BERT layer. h (B, T, H) float32; key_mask (B, T) bool (True = a real token)."""
    p = f"layer{i}"
    B, T, _ = h.shape
    nh, hd = cfg.num_attention_heads, cfg.head_dim
    act = ACTIVATIONS[cfg.hidden_act]
    with jax.named_scope(p):
        with jax.named_scope("attention"):
            q = _dense(params, f"{p}/attention/query", h).reshape(B, T, nh, hd)
            k = _dense(params, f"{p}/attention/key", h).reshape(B, T, nh, hd)
            v = _dense(params, f"{p}/attention/value", h).reshape(B, T, nh, hd)
            with jax.named_scope("scores"):  # one dot_general, batch dims (b, h)
                s = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=_HIGHEST)
            # Scale after the matmul and mask with the most negative float32, as
            # transformers' eager BertSelfAttention does (padding keys get weight 0).
            s = s / jnp.float32(math.sqrt(hd))
            s = jnp.where(key_mask[:, None, None, :], s, jnp.finfo(jnp.float32).min)
            w = jax.nn.softmax(s, axis=-1)
            with jax.named_scope("context"):
                c = jnp.einsum("bhqk,bkhd->bqhd", w, v, precision=_HIGHEST).reshape(B, T, nh * hd)
            a = _dense(params, f"{p}/attention/output", c)
            h = _layer_norm(a + h, params[f"{p}/attention/ln/g"], params[f"{p}/attention/ln/b"], cfg.layer_norm_eps)
        with jax.named_scope("ffn"):
            u = act(_dense(params, f"{p}/ffn/up", h))
            d = _dense(params, f"{p}/ffn/down", u)
            h = _layer_norm(d + h, params[f"{p}/ffn/ln/g"], params[f"{p}/ffn/ln/b"], cfg.layer_norm_eps)
    return h


def _make_apply(cfg: BertConfig, pooling: str, normalize: bool):
    def apply(params, token_ids, attention_mask):
        """Sentence embeddings.

        Args:
            params: the model's parameter dict (float32 arrays).
            token_ids: (B, T) integer token ids, T <= max_position_embeddings.
            attention_mask: (B, T) integer or bool, nonzero for real tokens, 0 for padding.
        Returns:
            (B, hidden_size) float32: pooled (and, if the model normalises, L2-normalised)
            embeddings.
        """
        token_ids = jnp.asarray(token_ids)
        mask = jnp.asarray(attention_mask) != 0
        # Shapes are static under jit and the bridge's tracing: these checks cost nothing per call.
        if token_ids.ndim != 2 or mask.shape != token_ids.shape:
            raise ValueError(f"token_ids and attention_mask must both be (B, T), not {token_ids.shape} and {mask.shape}")
        if not jnp.issubdtype(token_ids.dtype, jnp.integer):
            raise TypeError(f"token_ids must be integers, not {token_ids.dtype}")
        T = token_ids.shape[1]
        if not 1 <= T <= cfg.max_position_embeddings:
            raise ValueError(f"sequence length T must be in [1, {cfg.max_position_embeddings}], not {T}")
        with jax.named_scope("embeddings"):
            # token_type_ids are all 0: single-sentence inputs, as sentence-transformers encodes.
            x = (jnp.take(params["embeddings/word"], token_ids, axis=0)
                 + params["embeddings/position"][:T][None]
                 + params["embeddings/token_type"][0][None, None])
            h = _layer_norm(x, params["embeddings/ln/g"], params["embeddings/ln/b"], cfg.layer_norm_eps)
        for i in range(cfg.num_hidden_layers):
            h = _encoder_layer(cfg, params, i, h, mask)
        with jax.named_scope("pooling"):
            m = mask[..., None].astype(jnp.float32)
            if pooling == "mean":
                # sentence-transformers: sum over real tokens / max(count, 1e-9)
                e = jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), jnp.float32(1e-9))
            elif pooling == "cls":
                e = h[:, 0]
            else:  # max: padding set to -1e9 first, as sentence-transformers does
                e = jnp.max(jnp.where(m > 0, h, jnp.float32(-1e9)), axis=1)
        if normalize:
            with jax.named_scope("normalize"):  # torch.nn.functional.normalize(p=2, eps=1e-12)
                n = jnp.sqrt(jnp.sum(e * e, axis=-1, keepdims=True))
                e = e / jnp.maximum(n, jnp.float32(1e-12))
        return e

    return apply


# ---- the model object -----------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PretrainedModel:
    """A pretrained sentence encoder: tokenizer, parameters and a pure JAX ``apply``.

    Attributes:
        name: the checkpoint directory's name (``"all-MiniLM-L6-v2"``).
        path: the directory it was loaded from.
        config: the validated :class:`BertConfig`.
        params: dict ``{"embeddings/word": (vocab, H), "layer0/attention/query/w": (H, H), ...}``
            of float32 jax arrays; dense weights are stored (in, out), so a layer is
            ``x @ w + b``.
        apply: ``apply(params, token_ids, attention_mask) -> (B, hidden_size)`` float32
            embeddings (see :func:`load_pretrained`); pure, jit-able, and every GEMM in
            it is a ``dot_general`` the bridge routes to the simulator.
        pooling: ``"mean"``, ``"cls"`` or ``"max"``.
        normalize: whether ``apply`` L2-normalises the pooled embedding.
        max_length: default truncation length of :meth:`tokenize`, in tokens
            (``[CLS]`` and ``[SEP]`` included).
    """

    name: str
    path: Path
    config: BertConfig
    params: dict = field(repr=False)
    apply: Callable = field(repr=False)
    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 512
    _tokenizer: object = field(default=None, repr=False)

    def tokenize(self, texts, max_length: int | None = None):
        """Token ids for a batch of texts, as the model's tokenizer makes them.

        Args:
            texts: a sequence of str (one sentence each; a lone str is rejected).
            max_length: truncate each text to this many tokens, ``[CLS]``/``[SEP]``
                included; ``None``: :attr:`max_length`.  2 <= max_length <=
                ``config.max_position_embeddings``.
        Returns:
            ``(token_ids, attention_mask)``: (B, T) int32 numpy arrays, padded on the
            right with the pad id to T = the longest sequence in the batch; the mask
            is 1 for real tokens and 0 for padding.
        """
        if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list or tuple of str, not {type(texts).__name__}")
        if not texts:
            raise ValueError("texts must not be empty")
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must contain only str, not {type(t).__name__}")
        if max_length is None:
            max_length = self.max_length
        if not isinstance(max_length, int) or isinstance(max_length, bool):
            raise TypeError(f"max_length must be an int or None, not {type(max_length).__name__}")
        if not 2 <= max_length <= self.config.max_position_embeddings:
            raise ValueError(f"max_length must be in [2, {self.config.max_position_embeddings}], not {max_length}")
        tok = self._tokenizer  # owned by this object (loaded for it); its settings are set per call
        tok.enable_truncation(max_length=max_length)
        encs = tok.encode_batch(list(texts))
        T = max(len(e.ids) for e in encs)
        ids = np.full((len(encs), T), self.config.pad_token_id, np.int32)
        mask = np.zeros((len(encs), T), np.int32)
        for i, e in enumerate(encs):
            n = len(e.ids)
            ids[i, :n] = e.ids
            mask[i, :n] = 1
        return ids, mask

    def encode(self, texts, max_length: int | None = None, batch_size: int = 64):
        """Embeddings of texts with the native JAX encoder (``jax.jit`` of :attr:`apply`).

        Texts are sorted by token count and run ``batch_size`` at a time, each batch
        padded to its longest text rounded up to a multiple of 16 tokens (few distinct
        shapes, so few compilations, and little padding).

        Args:
            texts: a list or tuple of str.
            max_length: as in :meth:`tokenize`.
            batch_size: int >= 1, texts per forward pass.
        Returns:
            (len(texts), hidden_size) float32 numpy array, row i = texts[i].
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, not {batch_size!r}")
        ids, mask = self.tokenize(texts, max_length)
        lengths = mask.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), self.config.hidden_size), np.float32)
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            T = min(-(-int(lengths[rows].max()) // 16) * 16, ids.shape[1])
            out[rows] = np.asarray(self._apply_jit(self.params, ids[rows, :T], mask[rows, :T]))
        return out

    @property
    def _apply_jit(self):
        # One jitted apply per model object (jax.jit caches its compilations by shape).
        fn = self.__dict__.get("_jit")
        if fn is None:
            fn = jax.jit(self.apply)
            object.__setattr__(self, "_jit", fn)
        return fn


# ---- loading --------------------------------------------------------------------------
def _read_json(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} must be valid JSON: {e}") from None


def _pipeline(root: Path, hidden: int):
    """(pooling, normalize) from sentence-transformers' modules.json, or mean + normalise without one."""
    mpath = root / "modules.json"
    if not mpath.exists():
        return "mean", True
    modules = _read_json(mpath)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "type" in m for m in modules):
        raise ValueError(f"{mpath} must be a list of modules with a 'type', not {modules!r}")
    types = [m["type"] for m in modules]
    if not types or types[0] != _ST_TRANSFORMER:
        raise ValueError(f"{mpath}: the first module must be {_ST_TRANSFORMER!r}, not {types[:1]}")
    if len(types) < 2 or types[1] != _ST_POOLING:
        raise ValueError(f"{mpath}: the second module must be {_ST_POOLING!r}, not {types[1:2]}")
    rest = types[2:]
    if rest not in ([], [_ST_NORMALIZE]):
        raise ValueError(f"{mpath}: modules after Pooling must be [] or [{_ST_NORMALIZE!r}], not {rest}")
    ppath = root / (modules[1].get("path") or "1_Pooling") / "config.json"
    pcfg = _read_json(ppath)
    dim = pcfg.get("word_embedding_dimension", hidden)
    if dim != hidden:
        raise ValueError(f"{ppath}: field 'word_embedding_dimension' must be {hidden} (config.json hidden_size), "
                         f"not {dim!r}")
    modes = [m for m in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens",
                         "lasttoken") if pcfg.get(f"pooling_mode_{m}", False)]
    known = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}
    if len(modes) != 1 or modes[0] not in known:
        raise ValueError(f"{ppath}: exactly one of pooling_mode_mean_tokens / _cls_token / _max_tokens must be "
                         f"true, not {['pooling_mode_' + m for m in modes]}")
    return known[modes[0]], rest == [_ST_NORMALIZE]


def _load_params(path: Path, cfg: BertConfig) -> dict:
    try:
        raw = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for a corrupt header
        raise ValueError(f"{path} must be a safetensors file readable by safetensors.numpy: {e}") from None
    # Task-specific checkpoints (BertForMaskedLM, ...) prefix the encoder's tensors with "bert.".
    if not any(k.startswith("embeddings.") for k in raw) and any(k.startswith("bert.embeddings.") for k in raw):
        raw = {k[len("bert."):]: v for k, v in raw.items() if k.startswith("bert.")}
    H, I = cfg.hidden_size, cfg.intermediate_size

    def get(key, shape, transpose=False):
        if key not in raw:
            raise ValueError(f"{path}: tensor {key!r} is missing")
        x = raw[key]
        if x.dtype.kind != "f":
            raise ValueError(f"{path}: tensor {key!r} must be floating point, not {x.dtype}")
        if x.shape != shape:
            raise ValueError(f"{path}: tensor {key!r} must have shape {shape}, not {x.shape}")
        x = x.astype(np.float32)  # exact for float32, float16 and bfloat16 checkpoints
        return jnp.asarray(np.ascontiguousarray(x.T) if transpose else x)

    p = {
        "embeddings/word": get("embeddings.word_embeddings.weight", (cfg.vocab_size, H)),
        "embeddings/position": get("embeddings.position_embeddings.weight", (cfg.max_position_embeddings, H)),
        "embeddings/token_type": get("embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, H)),
        "embeddings/ln/g": get("embeddings.LayerNorm.weight", (H,)),
        "embeddings/ln/b": get("embeddings.LayerNorm.bias", (H,)),
    }
    for i in range(cfg.num_hidden_layers):
        src, dst = f"encoder.layer.{i}", f"layer{i}"
        # torch Linear stores (out, in); kept here as (in, out) so that a layer is x @ w + b.
        for s, d, shape in (("attention.self.query", "attention/query", (H, H)),
                            ("attention.self.key", "attention/key", (H, H)),
                            ("attention.self.value", "attention/value", (H, H)),
                            ("attention.output.dense", "attention/output", (H, H)),
                            ("intermediate.dense", "ffn/up", (I, H)),
                            ("output.dense", "ffn/down", (H, I))):
            p[f"{dst}/{d}/w"] = get(f"{src}.{s}.weight", shape, transpose=True)
            p[f"{dst}/{d}/b"] = get(f"{src}.{s}.bias", (shape[0],))
        for s, d in (("attention.output.LayerNorm", "attention/ln"), ("output.LayerNorm", "ffn/ln")):
            p[f"{dst}/{d}/g"] = get(f"{src}.{s}.weight", (H,))
            p[f"{dst}/{d}/b"] = get(f"{src}.{s}.bias", (H,))
    return p


def load_pretrained(path) -> PretrainedModel:
    """Load a Hugging Face BERT-family sentence encoder from a local directory.

    The directory is what the Hugging Face hub publishes for a model (for example
    ``huggingface-cli download sentence-transformers/all-MiniLM-L6-v2 --local-dir DIR``):

    - ``config.json``: ``model_type`` must be ``"bert"`` (``architectures``, if given,
      ``Bert*``), absolute position embeddings, ``hidden_act`` in :data:`ACTIVATIONS`;
    - ``model.safetensors``: the weights (float32, float16 or bfloat16; read with
      ``safetensors.numpy``, no PyTorch), optionally under a ``bert.`` prefix;
    - ``tokenizer.json``: a ``tokenizers`` tokenizer (its own padding and truncation
      settings are replaced: :meth:`PretrainedModel.tokenize` pads to the longest text
      and truncates to ``max_length``);
    - optional, sentence-transformers: ``modules.json`` (Transformer -> Pooling
      [-> Normalize]), the pooling module's ``config.json`` (mean, cls or max) and
      ``sentence_bert_config.json`` (``max_seq_length``).  Without ``modules.json`` the
      pipeline is mean pooling then L2 normalisation.

    ``apply(params, token_ids, attention_mask)`` is then: embeddings (word + position +
    token type 0, LayerNorm), ``num_hidden_layers`` post-LN encoder layers (multi-head
    self-attention with the padding mask, GELU FFN), pooling over real tokens, and
    the L2 normalisation.  Everything runs in float32.

    Args:
        path: str or os.PathLike, the directory.
    Returns:
        a :class:`PretrainedModel`.
    Raises:
        TypeError: path is not a str or PathLike.
        FileNotFoundError: the directory or one of its required files is missing (the
            message names it).
        ValueError: an unsupported architecture or a malformed file (the message names
            the file and the field or tensor).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} must be a model directory (config.json, model.safetensors, "
                                f"tokenizer.json), but it does not exist or is not a directory")
    for fname in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (root / fname).is_file():
            raise FileNotFoundError(f"{root / fname} is missing: a BERT checkpoint directory needs config.json, "
                                    f"model.safetensors and tokenizer.json")
    cfg_json = _read_json(root / "config.json")
    if not isinstance(cfg_json, dict):
        raise ValueError(f"{root / 'config.json'} must hold a JSON object, not {type(cfg_json).__name__}")
    cfg = BertConfig.from_json(cfg_json, root / "config.json")
    pooling, normalize = _pipeline(root, cfg.hidden_size)

    max_length = cfg.max_position_embeddings
    st_path = root / "sentence_bert_config.json"
    if st_path.exists():
        msl = _read_json(st_path).get("max_seq_length", max_length)
        if not isinstance(msl, int) or isinstance(msl, bool) or not 2 <= msl <= cfg.max_position_embeddings:
            raise ValueError(f"{st_path}: field 'max_seq_length' must be an int in "
                             f"[2, {cfg.max_position_embeddings}], not {msl!r}")
        max_length = msl

    try:
        tok = Tokenizer.from_file(str(root / "tokenizer.json"))
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        raise ValueError(f"{root / 'tokenizer.json'} must be a tokenizers JSON file: {e}") from None
    tok.no_padding()  # tokenize() pads to the longest itself (the file may say Fixed(128))
    tok.no_truncation()

    params = _load_params(root / "model.safetensors", cfg)
    return PretrainedModel(name=root.resolve().name, path=root, config=cfg, params=params,
                           apply=_make_apply(cfg, pooling, normalize), pooling=pooling, normalize=normalize,
                           max_length=max_length, _tokenizer=tok)
