"""The campaign specification: what a model fault-injection campaign is.

This module owns :class:`ModelCampaign`, a frozen, validated description of a campaign
(which model on how many evaluation images, which PE array — its profile is the
accelerator's datapath —, which input formats, register-level or value-level faults,
transient ones or permanent ones (one faulty chip per trial: :mod:`faults._chip_trial`),
how many trials, the seed), its canonical JSON (what a results database stores and
checks) and :func:`make_array`.  Everything about trial ``i`` — its fault and its
result — is a pure function of ``(campaign, i)``: :mod:`faults._sites` maps ``i`` to a
site, :mod:`faults._trial` runs it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from models import (ACCUMULATORS, INPUT_FORMATS, MODELS, SHIPPED_BATCH, WORKLOADS, Accelerator, Workload, get_workload,
                    load_workload)
from protection import SCHEMES, ProtectedArray
from simulator import STUCK_KINDS, SystolicArray, TensorCoreArray, get_profile

__all__ = ["ModelCampaign", "LEVELS", "STRATIFY", "FAULT_MODELS", "make_array", "WorkloadRef"]

#: Fault levels: register-level (cycle-level array) or value-level (one bit of one GEMM output).
LEVELS = ("register", "value")
#: Stratification of the trials: one stratum per input format, or per format and GEMM.
STRATIFY = ("format", "layer")
#: Fault models: one transient flip per trial, or one faulty chip (a sampled
#: :class:`simulator.FaultMap` of stuck-at bits) per trial.
FAULT_MODELS = ("transient", "permanent")
#: Fields added after the first stored campaigns: left out of the canonical JSON while
#: they hold their default, so every campaign expressible before keeps its JSON and digest
#: (and the databases that store it stay readable).
_LATER_FIELDS = {"fault_model": "transient", "fault_rate": None, "stuck": STUCK_KINDS, "bits": None}


def _default_array() -> SystolicArray:
    return SystolicArray(16, 16)


def make_array(rows: int, cols: int, profile: str = "systolic_fma", dataflow: str = "ws",
               pipeline_depth: int | None = None):
    """A :class:`simulator.SystolicArray` for a scalar-FMA profile (``pipeline_depth`` None:
    the class default), else a :class:`simulator.TensorCoreArray` (weight-stationary, its depth
    set by the profile: ``dataflow`` must be "ws" and ``pipeline_depth`` None)."""
    prof = get_profile(profile)
    kw = {} if pipeline_depth is None else {"pipeline_depth": pipeline_depth}
    if all(r.frac_bits is None for r in prof.rules.values()):
        return SystolicArray(rows, cols, profile=profile, dataflow=dataflow, **kw)
    if dataflow != "ws":
        raise ValueError(f"dataflow must be 'ws' for the tensor-core profile {profile!r}, not {dataflow!r}")
    if pipeline_depth is not None:
        raise ValueError(f"pipeline_depth must be None for the tensor-core profile {profile!r} "
                         f"(its unit's depth follows from the profile), not {pipeline_depth!r}")
    return TensorCoreArray(rows, cols, profile=profile)


@dataclass(frozen=True)
class WorkloadRef:
    """A campaign's in-memory :class:`models.Workload` as its database stores it: its
    name and digest.  A campaign read back from a database holds this in place of the
    workload; running its trials needs the workload itself
    (``resume_model_campaign(path, workload=...)``), whose digest must match."""

    name: str
    digest: str


_SCHEME_TYPES = {c.__name__: c for c in SCHEMES}


def _scheme_to_json(s) -> dict:
    d = {"type": type(s).__name__}
    for f in dataclasses.fields(s):
        v = getattr(s, f.name)
        d[f.name] = list(v) if isinstance(v, tuple) else v
    return d


def _scheme_from_json(d: dict):
    cls = _SCHEME_TYPES.get(d.get("type"))
    if cls is None:
        raise ValueError(f"scheme type must be one of {sorted(_SCHEME_TYPES)}, not {d.get('type')!r}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "type"}
    return cls(**kw)


def _array_to_json(arr) -> dict:
    if isinstance(arr, ProtectedArray):
        return {"type": "ProtectedArray", "array": _array_to_json(arr.array),
                "schemes": [_scheme_to_json(s) for s in arr.schemes]}
    if not isinstance(arr.profile, str):
        raise TypeError(f"array.profile must be a profile name (str) in a campaign, not "
                        f"{type(arr.profile).__name__}")
    d = {"type": type(arr).__name__, "rows": arr.rows, "cols": arr.cols, "profile": arr.profile}
    if isinstance(arr, SystolicArray):
        d.update(dataflow=arr.dataflow, pipeline_depth=arr.pipeline_depth)
    return d


def _array_from_json(d: dict):
    if d.get("type") == "ProtectedArray":
        return ProtectedArray(_array_from_json(d["array"]), tuple(_scheme_from_json(x) for x in d["schemes"]))
    cls = {"SystolicArray": SystolicArray, "TensorCoreArray": TensorCoreArray}.get(d.get("type"))
    if cls is None:
        raise ValueError(f"array type must be SystolicArray or TensorCoreArray, not {d.get('type')!r}")
    if cls is TensorCoreArray:
        return cls(d["rows"], d["cols"], profile=d["profile"])
    return cls(d["rows"], d["cols"], profile=d["profile"], dataflow=d["dataflow"], pipeline_depth=d["pipeline_depth"])


def _int(name, v, lo=None, hi=None, none=False):
    if v is None and none:
        return
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
        raise TypeError(f"{name} must be an int{' or None' if none else ''}, not {type(v).__name__}")
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be >= {lo}, not {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{name} must be <= {hi}, not {v}")


@dataclass(frozen=True)
class ModelCampaign:
    """A fault-injection campaign on a model.

    The fault space and strata are described in :mod:`faults._sites`, a trial and its
    outcomes (:data:`faults.TRIAL_OUTCOMES`) in :mod:`faults._trial`.

    Attributes:
        model: the workload: a :data:`models.MODELS` name (shipped weights on the
            digits test split), ``"module:function"`` (a factory of no arguments
            returning a :class:`models.Workload`, importable by worker processes,
            Dask workers and a later resume; the database keeps the reference and the
            workload's digest), or a :class:`models.Workload` itself (runs in this
            process only: ``executor="serial"``).
        array: the PE array (:class:`simulator.SystolicArray` or
            :class:`simulator.TensorCoreArray`, profile given by name), or a
            :class:`protection.ProtectedArray` of one (any schemes: trials then end
            ``corrected`` / ``detected`` as the schemes act); its profile is the
            accelerator's datapath.
        formats: input formats, one stratum (or one per layer) each.
        accumulator: ``"fp32"`` or ``"fp16"`` (the profile must support it).
        batch: evaluation examples, the first ``batch`` of the workload's (None: all
            of them; a shipped model's workload: the first 256 test images, at most 360).
        level: ``"register"`` or ``"value"``.
        registers: register names to sample (None: all of the array's registers).
        kind: register fault kind, ``"flip"`` (a single-event upset) only for now
            (a transient campaign's; a permanent one's stuck values are ``stuck``).
        margin, confidence, p: the sample-size formula's error margin, confidence
            and anticipated proportion (used when ``trials`` is None).
        trials: trials per stratum (None: :func:`faults.sample_size` of its population).
        stratify: ``"format"`` or ``"layer"`` (format x GEMM).
        seed: the campaign seed (int >= 0).
        tile_rows, tile_cols: output-tile size (None: the array's rows / cols).
        chunk: images per cached golden sub-run used to recompute a fault's effect
            (None: recompute the whole batch).  Does not change any result.
        detector: ``"module:function"`` of a protection check called as
            ``fn(TileCheck) -> bool`` on every faulty tile, or None.
        fault_model: ``"transient"`` (the default: one fault per trial, the fields
            above) or ``"permanent"``: each trial is one chip, a
            :class:`simulator.FaultMap` drawn by :meth:`simulator.FaultMap.sample`
            with ``rate=fault_rate``, through which the whole evaluation set runs
            (every GEMM, every tile, every fold; :func:`models.run_on_chip`).  A chip
            of stratum (format, rate) has ``round(rate * rows * cols)`` faulty PEs,
            one stuck-at fault each; its register and stuck value are the same on all
            of its faulty PEs and cycle through ``registers x stuck`` in order over
            the stratum's chips (a balanced design: the report groups chips by them);
            drawn uniformly, from a seed derived from ``(seed, trial)``: the set of
            faulty PEs (without replacement) and each one's bit (over ``bits`` that
            fit the register, else all of its bits).  Fixed: one bit per fault,
            held from cycle 0 for the whole run.  Permanent campaigns need
            ``trials`` (chips per stratum), ``level="register"``,
            ``stratify="format"``, an unprotected array, no tile size and no
            detector; ``chunk`` is not used (set to None).
        fault_rate: permanent: the fraction of faulty PEs, a float in [0, 1] or a
            tuple of them (one stratum per format and rate); transient: None.
        stuck: permanent: the stuck values drawn (``"stuck0"``, ``"stuck1"``).
        bits: permanent: the bit positions drawn (None: every bit of the register).
        scaling: the FP8 scaling recipe of every format's :class:`models.Accelerator`
            (:data:`models.SCALINGS`: ``"none"``, ``"tensor"``, ``"row"`` or
            ``"block:N"``; meant for the FP8 formats, refused with tf32 as
            :class:`models.Accelerator` refuses it).  Faults hit D before the scaling epilogue (the tile the array
            computes from the quantised operands).  ``"block:N"`` only at value level:
            its D is a binary32 sum of per-block partials, which no register-level
            tile run over the whole K computes.  Stored in the campaign's JSON (and
            digest) only when not ``"none"``, so earlier databases keep their digest.
    """

    model: object = "cnn"
    array: object = field(default_factory=_default_array)
    formats: tuple = ("fp16",)
    accumulator: str = "fp32"
    batch: int | None = None
    level: str = "register"
    registers: tuple | None = None
    kind: str = "flip"
    margin: float = 0.05
    confidence: float = 0.95
    p: float = 0.5
    trials: int | None = None
    stratify: str = "format"
    seed: int = 0
    tile_rows: int | None = None
    tile_cols: int | None = None
    chunk: int | None = 8
    detector: str | None = None
    fault_model: str = "transient"
    fault_rate: float | tuple | None = None
    stuck: tuple = STUCK_KINDS
    bits: tuple | None = None
    scaling: str = "none"

    def __post_init__(self):
        if not isinstance(self.model, (str, Workload, WorkloadRef)):
            raise TypeError(f"model must be a str (a model name or 'module:function') or a models.Workload, "
                            f"not {type(self.model).__name__}")
        if isinstance(self.model, str) and self.model not in MODELS and self.model not in WORKLOADS:
            mod, sep, fn = self.model.partition(":")
            if not (sep and mod and fn):
                raise ValueError(f"model must be one of {sorted(MODELS) + sorted(WORKLOADS)} or 'module:function' "
                                 f"(a Workload factory), not {self.model!r}")
        if not isinstance(self.array, (SystolicArray, TensorCoreArray, ProtectedArray)):
            raise TypeError(f"array must be a SystolicArray, TensorCoreArray or ProtectedArray, "
                            f"not {type(self.array).__name__}")
        _array_to_json(self.array)
        fm = self.formats
        if isinstance(fm, str):
            fm = (fm,)
        if not isinstance(fm, (tuple, list)) or not fm or not all(isinstance(f, str) for f in fm):
            raise TypeError(f"formats must be a non-empty tuple of str, not {self.formats!r}")
        object.__setattr__(self, "formats", tuple(fm))
        if len(set(fm)) != len(fm):
            raise ValueError(f"formats must be distinct, not {fm!r}")
        if not isinstance(self.scaling, str):
            raise TypeError(f"scaling must be a str, not {type(self.scaling).__name__}")
        for f in fm:
            if f not in INPUT_FORMATS:
                raise ValueError(f"formats must be in {sorted(INPUT_FORMATS)}, not {f!r}")
            # the profile supports format and accumulator; scaling is a recipe (models.SCALINGS) the format takes
            Accelerator(self.profile, f, self.accumulator, scaling=self.scaling)
        if self.accumulator not in ACCUMULATORS:
            raise ValueError(f"accumulator must be one of {sorted(ACCUMULATORS)}, not {self.accumulator!r}")
        _int("batch", self.batch, 1, 360 if self.model in MODELS else None, none=True)
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {self.level!r}")
        if self.level == "register" and self.scaling.startswith("block:"):
            raise ValueError(f"scaling must be 'none', 'tensor' or 'row' at level 'register', not {self.scaling!r} "
                             f"(block scaling sums per-block partials in binary32: use level 'value')")
        if self.registers is not None:
            regs = (self.registers,) if isinstance(self.registers, str) else self.registers
            if not isinstance(regs, (tuple, list)) or not regs or not all(isinstance(r, str) for r in regs):
                raise TypeError(f"registers must be a non-empty tuple of str or None, not {self.registers!r}")
            object.__setattr__(self, "registers", tuple(regs))
            for f in fm:
                names = [n for n, _, _ in self.array.fault_sites(1, 1, 1, f, self.accumulator).registers]
                bad = [r for r in regs if r not in names]
                if bad:
                    raise ValueError(f"registers must be among {names} for {f}, not {bad}")
            if self.level != "register":
                raise ValueError(f"registers must be None for level {self.level!r}, not {self.registers!r}")
        if self.kind != "flip":
            raise ValueError(f"kind must be 'flip', not {self.kind!r}")
        for n in ("margin", "confidence", "p"):
            v = getattr(self, n)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise TypeError(f"{n} must be a float, not {type(v).__name__}")
            if not 0 < v < 1:
                raise ValueError(f"{n} must be in (0, 1), not {v}")
        _int("trials", self.trials, 1, none=True)
        if self.stratify not in STRATIFY:
            raise ValueError(f"stratify must be one of {STRATIFY}, not {self.stratify!r}")
        _int("seed", self.seed, 0)
        _int("tile_rows", self.tile_rows, 1, none=True)
        _int("tile_cols", self.tile_cols, 1, none=True)
        _int("chunk", self.chunk, 1, none=True)
        if self.detector is not None and (not isinstance(self.detector, str) or ":" not in self.detector):
            raise ValueError(f"detector must be 'module:function' or None, not {self.detector!r}")
        self._check_fault_model()

    def _check_fault_model(self) -> None:
        """The permanent-fault fields: defaults for a transient campaign, a chip's
        sampling (and only what a chip uses) for a permanent one."""
        if not isinstance(self.fault_model, str) or self.fault_model not in FAULT_MODELS:
            raise ValueError(f"fault_model must be one of {FAULT_MODELS}, not {self.fault_model!r}")
        if self.fault_model == "transient":
            for name, default in _LATER_FIELDS.items():
                v = getattr(self, name)
                same = v is None if default is None else (
                    isinstance(v, (tuple, list)) and tuple(v) == default if name == "stuck" else v == default)
                if not same:
                    raise ValueError(f"{name} must be {default!r} for fault_model 'transient' (it is a "
                                     f"permanent-fault setting), not {v!r}")
            object.__setattr__(self, "stuck", STUCK_KINDS)
            return
        rates = self.fault_rate if isinstance(self.fault_rate, (tuple, list)) else (self.fault_rate,)
        if not rates:
            raise ValueError("fault_rate must hold at least one rate for fault_model 'permanent', not none")
        for r in rates:
            if not isinstance(r, (int, float, np.integer, np.floating)) or isinstance(r, (bool, np.bool_)):
                raise TypeError(f"fault_rate must be a float in [0, 1] (or a tuple of them) for fault_model "
                                f"'permanent', not {type(r).__name__}")
            if not 0.0 <= float(r) <= 1.0:  # NaN fails too
                raise ValueError(f"fault_rate must be in [0, 1], not {r}")
        rates = tuple(float(r) for r in rates)
        if len(set(rates)) != len(rates):
            raise ValueError(f"fault_rate must hold distinct rates, not {rates}")
        object.__setattr__(self, "fault_rate", rates if isinstance(self.fault_rate, (tuple, list)) else rates[0])
        if isinstance(self.array, ProtectedArray):
            raise ValueError("array must be a SystolicArray or TensorCoreArray for fault_model 'permanent' "
                             "(mitigations of permanent faults are not campaigned), not a ProtectedArray")
        for name, want in (("level", "register"), ("stratify", "format"), ("tile_rows", None), ("tile_cols", None),
                           ("detector", None)):
            if getattr(self, name) != want:
                raise ValueError(f"{name} must be {want!r} for fault_model 'permanent', not {getattr(self, name)!r}")
        if self.trials is None:
            raise ValueError("trials must be an int >= 1 (chips per stratum) for fault_model 'permanent', not None")
        object.__setattr__(self, "chunk", None)  # not used by a chip: one canonical campaign (and digest)
        st = (self.stuck,) if isinstance(self.stuck, str) else self.stuck
        if not isinstance(st, (tuple, list)) or not st or not all(isinstance(k, str) for k in st):
            raise TypeError(f"stuck must be a non-empty tuple of str, not {self.stuck!r}")
        bad = [k for k in st if k not in STUCK_KINDS]
        if bad or len(set(st)) != len(st):
            raise ValueError(f"stuck must be distinct values among {STUCK_KINDS}, not {tuple(st)!r}")
        object.__setattr__(self, "stuck", tuple(st))
        if self.bits is not None:
            bits = (self.bits,) if isinstance(self.bits, (int, np.integer)) else self.bits
            if (not isinstance(bits, (tuple, list)) or not bits
                    or not all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in bits)):
                raise TypeError(f"bits must be a non-empty tuple of int or None, not {self.bits!r}")
            if min(bits) < 0 or len(set(bits)) != len(bits):
                raise ValueError(f"bits must be distinct ints >= 0, not {tuple(bits)!r}")
            bits = tuple(int(b) for b in bits)
            object.__setattr__(self, "bits", bits)
            for f in self.formats:
                for reg, width in self.array.registers(input_format=f, accumulator=self.accumulator):
                    if (self.registers is None or reg in self.registers) and min(bits) >= width:
                        raise ValueError(f"bits must include one below {width} (register {reg!r} in {f}), "
                                         f"not only {bits}")

    @property
    def fault_rates(self) -> tuple:
        """The permanent-fault rates as a tuple (empty for a transient campaign)."""
        if self.fault_rate is None:
            return ()
        return self.fault_rate if isinstance(self.fault_rate, tuple) else (self.fault_rate,)

    @property
    def permanent(self) -> bool:
        """Whether each trial is one chip (``fault_model == "permanent"``)."""
        return self.fault_model == "permanent"

    # ---- derived ---------------------------------------------------------------------
    @property
    def profile(self) -> str:
        """The datapath profile name (of the protected array's array for a ProtectedArray)."""
        arr = self.array.array if isinstance(self.array, ProtectedArray) else self.array
        return arr.profile

    @property
    def protected(self) -> bool:
        """Whether the array is a :class:`protection.ProtectedArray`."""
        return isinstance(self.array, ProtectedArray)

    @property
    def model_name(self) -> str:
        """The model name, factory reference, or in-memory workload's name."""
        return self.model if isinstance(self.model, str) else (
            self.model.name if isinstance(self.model, WorkloadRef) else self.model.label)

    def workload(self) -> Workload:
        """The campaign's workload on its ``batch`` examples: the shipped model's
        (:func:`models.get_workload`), the factory's (called here), or the one given.

        Raises ValueError for a campaign read back from a database on an in-memory
        workload (:class:`WorkloadRef`): pass the workload to resume it."""
        m = self.model
        if isinstance(m, WorkloadRef):
            raise ValueError(f"model must be the workload itself to run trials of a campaign on an in-memory "
                             f"workload ({m.name!r}, digest {m.digest}), not its reference: pass workload= to "
                             f"resume_model_campaign, or use a 'module:function' factory")
        if isinstance(m, str) and m in MODELS:
            return get_workload(m, self.batch or SHIPPED_BATCH)
        wl = load_workload(m) if isinstance(m, str) else m
        if self.batch is not None and self.batch > wl.batch:
            raise ValueError(f"batch must be <= the workload's {wl.batch} examples, not {self.batch}")
        return wl if self.batch is None else wl.take(self.batch)

    @property
    def tile(self) -> tuple:
        """(tile rows, tile cols) of an output tile."""
        return (self.tile_rows or self.array.rows, self.tile_cols or self.array.cols)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what the results database stores and checks."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["array"] = _array_to_json(self.array)
        if not isinstance(self.model, str):  # an in-memory workload: known by name and digest
            d["model"] = {"workload": self.model_name, "digest": self.model.digest}
        d["formats"] = list(self.formats)
        d["registers"] = None if self.registers is None else list(self.registers)
        for name, default in _LATER_FIELDS.items():
            if getattr(self, name) == default:
                del d[name]
            elif isinstance(d[name], tuple):
                d[name] = list(d[name])
        if self.scaling == "none":  # absent = "none": campaigns from before scaling keep their JSON and digest
            del d["scaling"]
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, workload: Workload | None = None) -> "ModelCampaign":
        """The campaign :meth:`to_json` wrote.  A campaign on an in-memory workload
        comes back holding a :class:`WorkloadRef`, or ``workload`` when given (its
        digest must be the stored one)."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"campaign JSON must be an object, not {type(d).__name__}")
        if isinstance(d.get("model"), dict):
            ref = WorkloadRef(str(d["model"]["workload"]), str(d["model"]["digest"]))
            if workload is not None and workload.digest != ref.digest:
                raise ValueError(f"workload must be the campaign's (digest {ref.digest}), not one with digest "
                                 f"{workload.digest}")
            d["model"] = ref if workload is None else workload
        d["array"] = _array_from_json(d["array"])
        d["formats"] = tuple(d["formats"])
        if d.get("registers") is not None:
            d["registers"] = tuple(d["registers"])
        for name in ("fault_rate", "stuck", "bits"):
            if isinstance(d.get(name), list):
                d[name] = tuple(d[name])
        return cls(**d)

    @property
    def digest(self) -> str:
        """SHA-256 of :meth:`to_json` (hex, first 16 digits)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def with_(self, **changes) -> "ModelCampaign":
        """A copy with some fields changed."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update(changes)
        return type(self)(**d)
