"""gemmfi.models: JAX models run on the simulated accelerator.

The bridge (:func:`accelerated`) runs any JAX function with its ``dot_general`` and
convolutions computed bit-exactly by :mod:`simulator`; :class:`GoldenTrace` caches a
fault-free run so that GEMM faults re-run only what they reach::

    acc = Accelerator("hopper", "fp16")                  # fp32 accumulation
    af = accelerated(model.apply, acc)
    logits = af(params, x)                               # fault-free
    golden = af.trace(params, x)                         # cached fault-free run
    golden.gemms                                         # (GemmSite(index, name, groups, M, K, N, where), ...)
    a, b, d = golden.operands(1)                         # GEMM 1's rounded operands and result
    golden.inject(OutputBitFlip(gemm=1, row=5, col=3, bit=30))
    golden.inject(ReplaceTile(gemm=1, rows=(0, 16), cols=(0, 16),
                              fn=lambda a_tile, b_tile, d_tile: faulty_array(a_tile, b_tile)))

FP8 scaling recipes: ``Accelerator("hopper", "e4m3", scaling="tensor" | "row" |
"block:32")`` scales operands into the format's range (power-of-two scales; block:
OCP MX E8M0 scales per 32 elements of K) and scales the result back;
``golden.scales(i)`` gives a GEMM's :class:`Scales` and
``golden.inject(ScaleBitFlip(gemm=i, operand="a", index=0, bit=23))`` flips one bit
of one scale factor.

Workloads: a :class:`Workload` is a JAX function with its parameters, data and
outcome rule (``"top1"``, ``"topk:K"``, ``"retrieval"``, ``"tolerance:REL"`` or a
callable); :func:`get_workload` gives a shipped model as one, :func:`load_workload`
calls a ``"module:function"`` factory; :data:`WORKLOADS` holds the built-in
``"minilm-retrieval"`` (:func:`minilm_retrieval`: all-MiniLM-L6-v2 on query/passage
retrieval pairs, from ``GEMMFI_MODELS_DIR`` or ``../shared/models``).
A faulty chip (:mod:`models._chip`): ``run_on_chip(golden, array_gemm(array, fault_map,
acc))`` runs every GEMM through a PE array with a :class:`simulator.FaultMap`;
``param_masks`` / ``retrain_masked`` prune and retrain around its faulty PEs.

The JAX engine (:mod:`models._jax_engine`): :func:`jax_matmul` is ``simulator.matmul``
in 32-bit integer ``jax.numpy`` (jit-able, vmap-able, no x64), bit for bit, for every
profile, format and accumulator of the catalogue (:data:`JAX_INPUT_FORMATS`).
``Accelerator(engine="jax")`` makes :func:`accelerated` return one JAX computation
(``jax.jit``, ``jax.vmap``, straight-through ``jax.grad``), bit for bit the eager result;
value-level faults become data (:func:`flip_array`, ``AcceleratedFunction.inject_many``);
:func:`chip_matmul` puts a faulty chip in it and :func:`finetune_on_chip` trains with it.

Models: :data:`MODELS` (``"mlp"``, ``"cnn"``, ``"transformer"``) on scikit-learn's
digits, shipped weights in ``models/weights``; ``python -m models`` prints
their accuracy per format.
"""
from ._accelerator import ACCUMULATORS, INPUT_FORMATS, SCALINGS, Accelerator, Scales
from ._bridge import FALLBACKS, AcceleratedFunction, GoldenTrace, InjectStats, accelerated
from ._jaxpr import GEMM_PRIMITIVES, OTHER_GEMM_PRIMITIVES, JaxprEvaluator, is_floating, is_gemm
from ._faults import GemmCall, GemmSite, OutputBitFlip, ReplaceGemmOutput, ReplaceTile
from ._train import (TABLE_FORMATS, TRAIN_SETTINGS, WEIGHTS_DIR, accuracy, accuracy_table, load_digits, load_params,
                     predict, retrain_all, save_params, train)
from ._scale_faults import GEMM_FAULTS, ScaleBitFlip
from ._zoo import MODELS, Model, get_model
from ._workload import (MODELS_DIR_ENV, SHIPPED_BATCH, WORKLOAD_OUTCOMES, WORKLOADS, Workload, get_workload,
                        load_workload, minilm_retrieval)
from ._chip import (array_gemm, chip_faults, chip_matmul, finetune_on_chip, param_masks, retrain_masked, run_on_chip,
                    weight_masks)
from ._jax_engine import JAX_INPUT_FORMATS, jax_matmul
from ._jax_bridge import FLIP_FIELDS, FLIP_TARGETS, flip_array
from ._pretrained import ACTIVATIONS, POOLING_MODES, BertConfig, PretrainedModel, load_pretrained

__all__ = ["ACCUMULATORS", "INPUT_FORMATS", "Accelerator", "AcceleratedFunction", "GoldenTrace", "InjectStats",
           "accelerated", "GEMM_PRIMITIVES", "JaxprEvaluator", "is_gemm", "GEMM_FAULTS", "GemmCall", "GemmSite", "OutputBitFlip", "ReplaceGemmOutput",
           "ReplaceTile", "TABLE_FORMATS", "TRAIN_SETTINGS", "WEIGHTS_DIR", "accuracy", "accuracy_table",
           "load_digits", "load_params", "predict", "retrain_all", "save_params", "train", "MODELS", "Model",
           "get_model"]
__all__ += ["FALLBACKS", "OTHER_GEMM_PRIMITIVES", "is_floating", "SHIPPED_BATCH", "WORKLOAD_OUTCOMES", "Workload",
            "get_workload", "load_workload"]
__all__ += ["array_gemm", "chip_faults", "chip_matmul", "finetune_on_chip", "param_masks", "retrain_masked", "run_on_chip",
            "weight_masks"]
__all__ += ["ACTIVATIONS", "POOLING_MODES", "BertConfig", "PretrainedModel", "load_pretrained"]
__all__ += ["SCALINGS", "Scales", "ScaleBitFlip"]
__all__ += ["MODELS_DIR_ENV", "WORKLOADS", "minilm_retrieval"]
__all__ += ["JAX_INPUT_FORMATS", "jax_matmul", "FLIP_FIELDS", "FLIP_TARGETS", "flip_array"]
