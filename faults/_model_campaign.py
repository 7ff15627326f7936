"""Fault-injection campaigns on a model run by the simulated accelerator.

A :class:`ModelCampaign` is a frozen, validated description of a campaign: which model
on how many evaluation images, which PE array (its profile is the accelerator's),
which input formats, register-level or value-level faults, how many trials (from
the statistical fault-injection formula or given) and the seed.  Everything about
trial ``i`` — its fault and its result — is a pure function of ``(campaign, i)``.

Fault space (``level="register"``): the model's GEMMs are run on the array tile by
tile, an output tile being ``tile_rows x tile_cols`` elements of D computed with the
full K (so the accumulation order is the fast path's); one tile is one run of the
array.  A fault site is (GEMM, group, tile, register, bit, PE, cycle of the tile's
run): the population is the sum over tiles of ``register bits * PEs * cycles``.
``level="value"`` is the MPGemmFI method: a site is (GEMM, group, row, col, bit of D
in the accumulator format).  Sites are drawn without replacement through a keyed
permutation of the population (:class:`faults._stats.KeyedPermutation`).

Strata: one per input format (``stratify="format"``) or per format and GEMM
(``"layer"``); each stratum gets ``trials`` trials, or the formula's n for its
population.

A trial (:class:`_Runner`): the faulty tile is computed by the cycle-level array on the
tile's sub-GEMM, A[rows, :] @ B[:, cols]; a tile bitwise equal to the golden tile
stops the trial (masked).  Otherwise the tile replaces the golden one and only the
layers after the GEMM are recomputed (:meth:`models.GoldenTrace.inject`), and only for
the images the changed rows belong to: the evaluation batch has a cached golden run
per chunk of ``chunk`` images, checked at start-up to be bitwise the full batch's run
sliced (else the whole batch is recomputed).

Outcomes (:data:`OUTCOMES`), against the golden logits (B, classes):
``masked`` (bitwise equal), ``benign_sdc`` (differ, every top-1 the same),
``critical_sdc`` (some image's top-1 changed), ``nan_inf`` (a NaN or infinity in
the logits), ``detected`` (a protection check flagged the tile: ``detector`` returned
True or the array's result carries a truthy ``detected``); ``effect`` keeps what the
outcome would have been without detection.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import warnings
from dataclasses import dataclass, field

import numpy as np

import simulator

from simulator import Fault
from ._stats import KeyedPermutation, sample_size

__all__ = ["ModelCampaign", "TileCheck", "Stratum", "TrialSite", "OUTCOMES", "LEVELS", "STRATIFY",
           "TRIAL_COLUMNS", "make_array"]

#: Trial outcome classes.
OUTCOMES = ("masked", "benign_sdc", "critical_sdc", "nan_inf", "detected")
#: Fault levels: register-level (cycle-level array) or value-level (one bit of one GEMM output).
LEVELS = ("register", "value")
#: Stratification of the trials.
STRATIFY = ("format", "layer")

#: Columns of a trial's result row (the results database's ``trials`` table).
TRIAL_COLUMNS = ("trial", "stratum", "format", "gemm", "layer", "grp", "row0", "col0", "rows", "cols",
                 "register", "bit", "pe_row", "pe_col", "cycle", "outcome", "effect", "tile_diff",
                 "top1_changed", "correct_delta", "max_abs_err")


def make_array(rows: int, cols: int, profile: str = "systolic_fma", dataflow: str = "ws",
               pipeline_depth: int | None = None):
    """A :class:`simulator.SystolicArray` for a scalar-FMA profile, else a
    :class:`simulator.TensorCoreArray` (``pipeline_depth`` None: the class default)."""
    prof = simulator.get_profile(profile)
    kw = {} if pipeline_depth is None else {"pipeline_depth": pipeline_depth}
    if all(r.frac_bits is None for r in prof.rules.values()):
        return simulator.SystolicArray(rows, cols, dataflow, profile, **kw)
    return simulator.TensorCoreArray(rows, cols, profile, dataflow, **kw)


def _array_to_json(arr) -> dict:
    if not isinstance(arr.profile, str):
        raise TypeError(f"array.profile must be a profile name (str) in a campaign, not "
                        f"{type(arr.profile).__name__}")
    return {"type": type(arr).__name__, "rows": arr.rows, "cols": arr.cols, "dataflow": arr.dataflow,
            "profile": arr.profile, "pipeline_depth": arr.pipeline_depth}


def _array_from_json(d: dict):
    cls = {"SystolicArray": simulator.SystolicArray, "TensorCoreArray": simulator.TensorCoreArray}.get(d.get("type"))
    if cls is None:
        raise ValueError(f"array type must be SystolicArray or TensorCoreArray, not {d.get('type')!r}")
    return cls(rows=d["rows"], cols=d["cols"], dataflow=d["dataflow"], profile=d["profile"],
               pipeline_depth=d["pipeline_depth"])


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
    """A fault-injection campaign on a model (see the module docstring).

    Attributes:
        model: a :data:`models.MODELS` name (shipped weights).
        array: the PE array (:class:`simulator.SystolicArray` or
            :class:`simulator.TensorCoreArray`, profile given by name); its profile
            is the accelerator's datapath.
        formats: input formats, one stratum (or one per layer) each.
        accumulator: ``"fp32"`` or ``"fp16"`` (the profile must support it).
        batch: evaluation images, the first ``batch`` of the digits test split (<= 360).
        level: ``"register"`` or ``"value"``.
        registers: register names to sample (None: all of the array's registers).
        kind: register fault kind, ``"flip"`` (a single-event upset) only for now.
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
    """

    model: str = "cnn"
    array: object = field(default_factory=lambda: simulator.SystolicArray(16, 16))
    formats: tuple = ("fp16",)
    accumulator: str = "fp32"
    batch: int = 256
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

    def __post_init__(self):
        from models import ACCUMULATORS, INPUT_FORMATS, MODELS, Accelerator

        if not isinstance(self.model, str):
            raise TypeError(f"model must be a str, not {type(self.model).__name__}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {sorted(MODELS)}, not {self.model!r}")
        if not isinstance(self.array, (simulator.SystolicArray, simulator.TensorCoreArray)):
            raise TypeError(f"array must be a SystolicArray or TensorCoreArray, not {type(self.array).__name__}")
        _array_to_json(self.array)
        fm = self.formats
        if isinstance(fm, str):
            fm = (fm,)
        if not isinstance(fm, (tuple, list)) or not fm or not all(isinstance(f, str) for f in fm):
            raise TypeError(f"formats must be a non-empty tuple of str, not {self.formats!r}")
        object.__setattr__(self, "formats", tuple(fm))
        if len(set(fm)) != len(fm):
            raise ValueError(f"formats must be distinct, not {fm!r}")
        for f in fm:
            if f not in INPUT_FORMATS:
                raise ValueError(f"formats must be in {sorted(INPUT_FORMATS)}, not {f!r}")
            Accelerator(self.array.profile, f, self.accumulator)  # profile supports format/accumulator
        if self.accumulator not in ACCUMULATORS:
            raise ValueError(f"accumulator must be one of {sorted(ACCUMULATORS)}, not {self.accumulator!r}")
        _int("batch", self.batch, 1, 360)
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {self.level!r}")
        if self.registers is not None:
            regs = (self.registers,) if isinstance(self.registers, str) else self.registers
            if not isinstance(regs, (tuple, list)) or not regs or not all(isinstance(r, str) for r in regs):
                raise TypeError(f"registers must be a non-empty tuple of str or None, not {self.registers!r}")
            object.__setattr__(self, "registers", tuple(regs))
            for f in fm:
                names = [n for n, _ in self.array.registers(f, self.accumulator)]
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

    # ---- derived ---------------------------------------------------------------------
    @property
    def tile(self) -> tuple:
        """(tile rows, tile cols) of an output tile."""
        return (self.tile_rows or self.array.rows, self.tile_cols or self.array.cols)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): what the results database stores and checks."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["array"] = _array_to_json(self.array)
        d["formats"] = list(self.formats)
        d["registers"] = None if self.registers is None else list(self.registers)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ModelCampaign":
        """The campaign :meth:`to_json` wrote."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"campaign JSON must be an object, not {type(d).__name__}")
        d["array"] = _array_from_json(d["array"])
        d["formats"] = tuple(d["formats"])
        if d.get("registers") is not None:
            d["registers"] = tuple(d["registers"])
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


@dataclass(frozen=True)
class Stratum:
    """One stratum: a format and its GEMMs, the population of fault sites, the trials.

    Attributes:
        index: stratum number; format: input format; gemms: GEMM indices;
        population: fault sites N; trials: n; first: the first trial's index.
    """

    index: int
    format: str
    gemms: tuple
    population: int
    trials: int
    first: int


@dataclass(frozen=True)
class TrialSite:
    """Where trial ``trial``'s fault lands.

    Attributes:
        trial, stratum, format, gemm, layer (the GEMM's name), group;
        row0, col0, rows, cols: the output tile (value level: the element, 1 x 1);
        register ("output" at value level), bit, pe (row, col) and cycle of the tile's
        run ((-1, -1) and -1 at value level).
    """

    trial: int
    stratum: int
    format: str
    gemm: int
    layer: str
    group: int
    row0: int
    col0: int
    rows: int
    cols: int
    register: str
    bit: int
    pe: tuple
    cycle: int


@dataclass(frozen=True)
class TileCheck:
    """What a detector sees: one faulty tile.

    Attributes:
        a: (m, K) tile operands (input dtype); b: (K, n); d: (m, n) the faulty tile
        (accumulator dtype); result: the :class:`simulator.ArrayResult` (None at value
        level); site: the :class:`TrialSite`.
    """

    a: np.ndarray
    b: np.ndarray
    d: np.ndarray
    result: object
    site: TrialSite


class _GemmSpace:
    """Decoder of one GEMM's fault sites (flat index -> site fields)."""

    def __init__(self, campaign: ModelCampaign, fmt: str, site, regs, cycles_fn):
        self.site = site
        G, M, N = site.groups, site.M, site.N
        if campaign.level == "value":
            self.width = 32 if campaign.accumulator == "fp32" else 16
            self.size = G * M * N * self.width
            return
        tm, tn = campaign.tile
        self.tm, self.tn = tm, tn
        self.nrt, self.nct = -(-M // tm), -(-N // tn)
        self.m_last, self.n_last = M - (self.nrt - 1) * tm, N - (self.nct - 1) * tn
        self.regs = regs
        self.bits = sum(w for _, w in regs)
        self.pes = campaign.array.rows * campaign.array.cols
        per = self.bits * self.pes
        # sites of a tile by (last row strip?, last col?)
        self.tsize = {(lr, lc): per * cycles_fn(self.m_last if lr else tm, site.K, self.n_last if lc else tn)
                      for lr in (0, 1) for lc in (0, 1)}
        self.strip = {lr: (self.nct - 1) * self.tsize[(lr, 0)] + self.tsize[(lr, 1)] for lr in (0, 1)}
        self.group_size = (self.nrt - 1) * self.strip[0] + self.strip[1]
        self.size = G * self.group_size

    def decode(self, u: int) -> dict:
        s = self.site
        if not hasattr(self, "tm"):  # value level
            u, bit = divmod(u, self.width)
            u, col = divmod(u, s.N)
            group, row = divmod(u, s.M)
            return dict(group=group, row0=row, col0=col, rows=1, cols=1, register="output", bit=bit,
                        pe=(-1, -1), cycle=-1)
        group, u = divmod(u, self.group_size)
        full = (self.nrt - 1) * self.strip[0]
        if u < full:
            ti, u = divmod(u, self.strip[0])
            lr = 0
        else:
            ti, u, lr = self.nrt - 1, u - full, 1
        fullc = (self.nct - 1) * self.tsize[(lr, 0)]
        if u < fullc:
            tj, u = divmod(u, self.tsize[(lr, 0)])
            lc = 0
        else:
            tj, u, lc = self.nct - 1, u - fullc, 1
        u, b = divmod(u, self.bits)
        cycle, pe = divmod(u, self.pes)
        for name, w in self.regs:
            if b < w:
                break
            b -= w
        return dict(group=group, row0=ti * self.tm, col0=tj * self.tn, rows=self.m_last if lr else self.tm,
                    cols=self.n_last if lc else self.tn, register=name, bit=b, pe=pe, cycle=cycle)


class SiteSpace:
    """The strata of a campaign and the map trial index -> :class:`TrialSite`.

    Built from the GEMM sites of the model on each format (``gemms[format]``:
    tuple of :class:`models.GemmSite`); the same on every machine for the same campaign.
    """

    def __init__(self, campaign: ModelCampaign, gemms: dict):
        self.campaign = campaign
        arr = campaign.array
        self.gemms = gemms
        self.spaces: dict = {}
        cyc_cache: dict = {}
        strata = []
        first = 0
        for fmt in campaign.formats:
            regs = tuple((n, w) for n, w in arr.registers(fmt, campaign.accumulator)
                         if campaign.registers is None or n in campaign.registers)

            def cycles_fn(m, k, n, fmt=fmt):
                key = (fmt, m, k, n)
                if key not in cyc_cache:
                    cyc_cache[key] = arr.fault_sites(m, k, n, fmt, campaign.accumulator).cycles
                return cyc_cache[key]

            spaces = [_GemmSpace(campaign, fmt, s, regs, cycles_fn) for s in gemms[fmt]]
            self.spaces[fmt] = spaces
            groups = ([tuple(range(len(spaces)))] if campaign.stratify == "format"
                      else [(g,) for g in range(len(spaces))])
            for gs in groups:
                pop = sum(spaces[g].size for g in gs)
                n = campaign.trials if campaign.trials is not None else sample_size(
                    pop, campaign.margin, campaign.confidence, campaign.p)
                n = min(n, pop)
                strata.append(Stratum(len(strata), fmt, gs, pop, n, first))
                first += n
        self.strata = tuple(strata)
        self.total = first
        self._firsts = np.array([s.first for s in strata], np.int64)
        self._perms = {}

    def site(self, trial: int) -> TrialSite:
        """The fault of trial ``trial`` (0 <= trial < total): a pure function of
        (campaign, trial)."""
        if not 0 <= trial < self.total:
            raise ValueError(f"trial must be in [0, {self.total}), not {trial}")
        s = self.strata[int(np.searchsorted(self._firsts, trial, side="right")) - 1]
        perm = self._perms.get(s.index)
        if perm is None:
            perm = self._perms[s.index] = KeyedPermutation(s.population, (self.campaign.seed, s.index))
        u = perm(trial - s.first)
        spaces = self.spaces[s.format]
        for g in s.gemms:
            if u < spaces[g].size:
                break
            u -= spaces[g].size
        d = spaces[g].decode(u)
        pe = d.pop("pe")
        if isinstance(pe, int):
            pe = divmod(pe, self.campaign.array.cols)
        return TrialSite(trial=trial, stratum=s.index, format=s.format, gemm=g, layer=spaces[g].site.name,
                         pe=tuple(int(x) for x in pe), **d)


# ---- running trials ---------------------------------------------------------------------
def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))


def _resolve(path: str):
    mod, _, attr = path.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"detector must name an importable function 'module:function', not {path!r} ({e})")
    if not callable(obj):
        raise TypeError(f"detector must be callable, not {type(obj).__name__}")
    return obj


class _FormatRun:
    """Golden runs of the model on one format: the full batch and its chunks."""

    def __init__(self, campaign: ModelCampaign, fmt: str, model, params, x):
        from models import Accelerator, accelerated

        self.acc = Accelerator(campaign.array.profile, fmt, campaign.accumulator)
        self.af = accelerated(model.apply, self.acc)
        self.golden = self.af.trace(params, x)
        out = self.golden.outputs
        if not hasattr(out, "shape") or np.ndim(out) != 2 or out.shape[0] != len(x):
            raise ValueError(f"the model must return logits (batch, classes), not {type(out).__name__} "
                             f"{getattr(out, 'shape', '')}")
        self.logits = np.asarray(out)
        self.B = len(x)
        self.ops = [self.golden.operands(g) for g in range(len(self.golden.gemms))]
        self._btiles: dict = {}
        self.chunks, self.cs = None, campaign.chunk
        if campaign.chunk is not None and campaign.chunk < self.B:
            self.chunks = self._make_chunks(campaign.chunk, params, x)

    def _make_chunks(self, cs, params, x):
        """Golden runs on images [k*cs, (k+1)*cs), or None when their GEMMs are not
        bitwise the full batch's (then faults recompute the whole batch)."""
        B = self.B
        runs = [self.af.trace(params, x[k:k + cs]) for k in range(0, B, cs)]
        self.rpi = []
        for g, site in enumerate(self.golden.gemms):
            if (site.groups * site.M) % B:
                return self._no_chunks(f"GEMM {g} has {site.groups * site.M} rows for {B} images")
            self.rpi.append(site.groups * site.M // B)
        for k, run in enumerate(runs):
            n = min(cs, B - k * cs)
            if len(run.gemms) != len(self.golden.gemms):
                return self._no_chunks("the GEMMs differ with the batch size")
            if not np.array_equal(_bits(np.asarray(run.outputs)), _bits(self.logits[k * cs:k * cs + n])):
                return self._no_chunks("a chunk's logits differ from the full batch's")
            for g, (site, csite) in enumerate(zip(self.golden.gemms, run.gemms)):
                a, b, d = self.ops[g]
                ca, cb, cd = run.operands(g)
                r = self.rpi[g]
                lo, hi = k * cs * r, (k * cs + n) * r
                if (csite.K, csite.N) != (site.K, site.N) or csite.groups * csite.M != n * r:
                    return self._no_chunks(f"GEMM {g}'s shape does not split by image")
                if site.groups > 1 and site.M != csite.M:
                    return self._no_chunks(f"GEMM {g}'s groups do not split by image")
                if not (np.array_equal(_bits(ca.reshape(-1, site.K)), _bits(a.reshape(-1, site.K)[lo:hi]))
                        and np.array_equal(_bits(cd.reshape(-1, site.N)), _bits(d.reshape(-1, site.N)[lo:hi]))):
                    return self._no_chunks(f"GEMM {g}'s rows are not the full batch's")
                if site.groups > 1:
                    g0, g1 = lo // site.M, hi // site.M
                    if not np.array_equal(_bits(cb), _bits(b[g0:g1])):
                        return self._no_chunks(f"GEMM {g}'s B operands are not the full batch's")
                elif not np.array_equal(_bits(cb), _bits(b)):
                    return self._no_chunks(f"GEMM {g}'s B operand depends on the batch")
        return runs

    def _no_chunks(self, why):
        warnings.warn(f"chunked recomputation is off ({why}): faults recompute the whole batch", stacklevel=3)
        return None

    def btile(self, gemm, group, c0, c1):
        key = (gemm, group, c0)
        t = self._btiles.get(key)
        if t is None:
            t = self._btiles[key] = np.ascontiguousarray(self.ops[gemm][1][group, :, c0:c1])
        return t

    def propagate(self, gemm: int, group: int, row0: int, col0: int, tile: np.ndarray) -> np.ndarray:
        """Logits (B, classes) with D[group, row0:row0+m, col0:col0+n] of GEMM ``gemm``
        replaced by ``tile`` (m, n), recomputing only the layers after it."""
        from models import ReplaceTile

        m, n = tile.shape
        if self.chunks is None:
            f = ReplaceTile(gemm, (row0, row0 + m), (col0, col0 + n), lambda *_: tile, group)
            return np.asarray(self.golden.inject([f]))
        site = self.golden.gemms[gemm]
        changed = ~(_bits(tile) == _bits(self.golden.operands(gemm)[2][group, row0:row0 + m, col0:col0 + n])
                    ).all(axis=1)
        rpi, cs = self.rpi[gemm], self.cs
        logits = self.logits.copy()
        flat0 = group * site.M + row0
        rows = np.nonzero(changed)[0]
        for k in np.unique((flat0 + rows) // (cs * rpi)):
            k = int(k)
            lo = max(flat0, k * cs * rpi)
            hi = min(flat0 + m, (k * cs + cs) * rpi)
            run = self.chunks[k]
            cm = run.gemms[gemm].M
            f0 = lo - k * cs * rpi
            g1, r1 = divmod(f0, cm)
            f = ReplaceTile(gemm, (r1, r1 + hi - lo), (col0, col0 + n),
                            (lambda t: (lambda *_: t))(tile[lo - flat0:hi - flat0]), g1)
            out = np.asarray(run.inject([f]))
            logits[k * cs:k * cs + len(out)] = out
        return logits


class _Runner:
    """Runs trials of one campaign in this process (golden runs built once)."""

    def __init__(self, campaign: ModelCampaign):
        from models import get_model, load_digits, load_params

        self.campaign = campaign
        model = get_model(campaign.model)
        params = load_params(campaign.model)
        x, y = load_digits("test")
        x, self.labels = x[:campaign.batch], y[:campaign.batch]
        self.runs = {}
        for fmt in campaign.formats:
            run = _FormatRun(campaign, fmt, model, params, x)
            run.correct = int((run.logits.argmax(-1) == self.labels).sum())
            self.runs[fmt] = run
        self.space = SiteSpace(campaign, {f: r.golden.gemms for f, r in self.runs.items()})
        self.detector = _resolve(campaign.detector) if campaign.detector else None

    def run(self, trial: int) -> tuple:
        """The result row of one trial (:data:`TRIAL_COLUMNS`)."""
        s = self.space.site(trial)
        run = self.runs[s.format]
        c = self.campaign
        a_all, _, d_all = run.ops[s.gemm]
        r0, r1, c0, c1 = s.row0, s.row0 + s.rows, s.col0, s.col0 + s.cols
        gold = d_all[s.group, r0:r1, c0:c1]
        a = a_all[s.group, r0:r1]
        b = run.btile(s.gemm, s.group, c0, c1)
        if c.level == "register":
            res = c.array.run(a, b, np.zeros((s.rows, s.cols), gold.dtype),
                              faults=[Fault(s.pe, s.register, s.bit, s.cycle)],
                              input_format="tf32" if s.format == "tf32" else None)
            tile = res.output
        else:
            res = None
            tile = gold.copy()
            _bits(tile)[0, 0] ^= _bits(tile).dtype.type(1 << s.bit)
        diff = int((_bits(tile) != _bits(gold)).sum())
        detected = bool(getattr(res, "detected", False))
        if self.detector is not None:
            detected = bool(self.detector(TileCheck(a, b, tile, res, s))) or detected
        if diff == 0:  # stop early: the tile is the golden tile
            effect, top1, dcorrect, err = "masked", 0, 0, 0.0
        else:
            logits = run.propagate(s.gemm, s.group, r0, c0, tile)
            effect, top1, dcorrect, err = self._classify(run, logits)
        outcome = "detected" if detected else effect
        return (trial, s.stratum, s.format, s.gemm, s.layer, s.group, s.row0, s.col0, s.rows, s.cols, s.register,
                s.bit, s.pe[0], s.pe[1], s.cycle, outcome, effect, diff, top1, dcorrect, err)

    def _classify(self, run, logits):
        gold = run.logits
        if np.array_equal(_bits(logits), _bits(gold)):
            return "masked", 0, 0, 0.0
        p, g = logits.argmax(-1), gold.argmax(-1)
        top1 = int((p != g).sum())
        dcorrect = int((p == self.labels).sum()) - run.correct
        finite = np.isfinite(logits)
        with np.errstate(invalid="ignore", over="ignore"):
            err = float(np.abs(logits.astype(np.float64) - gold)[finite].max()) if finite.any() else 0.0
        if not finite.all():
            return "nan_inf", top1, dcorrect, err
        return ("critical_sdc" if top1 else "benign_sdc"), top1, dcorrect, err

    def run_many(self, trials) -> list:
        return [self.run(int(t)) for t in trials]


_RUNNERS: dict = {}


def run_trials(campaign_json: str, trials, threads: int | None = None) -> list:
    """Worker entry point: the result rows of ``trials`` (a runner is cached per campaign
    in each process).  ``threads``: Numba threads for this process (several workers on
    one machine: 1, else they oversubscribe the cores)."""
    if threads is not None:
        import numba

        if numba.get_num_threads() != threads:
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    r = _RUNNERS.get(campaign_json)
    if r is None:
        _RUNNERS.clear()
        r = _RUNNERS[campaign_json] = _Runner(ModelCampaign.from_json(campaign_json))
    return r.run_many(trials)


def site_space(campaign: ModelCampaign) -> SiteSpace:
    """The campaign's strata and trial -> site map (runs the model once per format to
    enumerate its GEMMs; reuses a runner cached in this process)."""
    r = _RUNNERS.get(campaign.to_json())
    if r is not None:
        return r.space
    from models import Accelerator, accelerated, get_model, load_digits, load_params

    model, params = get_model(campaign.model), load_params(campaign.model)
    x = load_digits("test")[0][:campaign.batch]
    gemms = {f: accelerated(model.apply, Accelerator(campaign.array.profile, f, campaign.accumulator)).gemms(
        params, x) for f in campaign.formats}
    return SiteSpace(campaign, gemms)
