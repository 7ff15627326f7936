"""Run a JAX function with its GEMMs computed by the simulator.

``accelerated(fn, accelerator)`` traces ``fn`` to a jaxpr and evaluates it equation by
equation on concrete values with the jaxpr walker (:class:`models.JaxprEvaluator`,
which owns keys, taint and nested jaxprs).  ``dot_general`` and
``conv_general_dilated`` on floating operands are rounded to the accelerator's input
format, lowered to 2-D GEMMs (:mod:`models._lowering`) and run by
:func:`simulator.matmul`; every other primitive is bound natively.  Nested jaxprs
(jit/pjit, closed_call, custom_jvp_call, custom_vjp_call, checkpoint, cond, while,
scan) are interpreted recursively, so the GEMMs inside them run on the accelerator too.

A fault-free run (:meth:`AcceleratedFunction.trace`) stores every equation's outputs
by key; a faulty run (:meth:`GoldenTrace.inject`) marks values that may differ from
that run as *tainted* and recomputes only equations with a tainted input (or a fault
under them), reusing the stored outputs for everything else.  A recomputed output
that comes out bitwise equal to the stored one is untainted again, so a fault that is
masked stops the recomputation right there.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ._accelerator import Accelerator
from ._faults import GemmCall, GemmSite, OutputBitFlip
from ._scale_faults import GEMM_FAULTS, ScaleBitFlip
from ._jax_bridge import FLIP_FIELDS, JaxInterpreter, check_flip_rows, flip_array
from ._jaxpr import JaxprEvaluator, _same
from ._lowering import lower_conv, lower_dot_general, promote, unroutable

__all__ = ["accelerated", "AcceleratedFunction", "GoldenTrace", "InjectStats", "FALLBACKS"]

#: What the bridge does with a GEMM it cannot route to the simulator.
FALLBACKS = ("error", "native")


@dataclass(frozen=True)
class InjectStats:
    """What a faulty run recomputed.

    Attributes:
        eqns_recomputed: equation executions evaluated (the rest came from the cache).
        gemms_recomputed: GEMM executions run through the simulator.
        masked: True when no output of the function differs from the fault-free run.
    """

    eqns_recomputed: int
    gemms_recomputed: int
    masked: bool


class _Interpreter(JaxprEvaluator):
    """One evaluation of a jaxpr with its GEMMs on the accelerator.

    golden: key -> outputs of a fault-free run (None: compute everything).
    record: store outputs (and GEMM operands) by key, number GEMM sites.
    faults_by_index / faults_by_key: faults to apply at GEMM index / key.
    """

    label = "the bridge"

    def __init__(self, acc: Accelerator, *, golden=None, golden_sites=None, golden_gemm=None, record=False,
                 faults_by_index=None, faults_by_key=None, keep_operands=True, fallback="error", round_cache=None):
        self.fallback = fallback
        # id -> (jax array, rounded operand): the function's immutable array arguments
        # (weights) rounded once across calls; see AcceleratedFunction._round_cache.
        self.round_cache = round_cache if round_cache is not None else {}
        self.faults_by_index = faults_by_index or {}
        self.faults_by_key = faults_by_key or {}
        super().__init__(golden=golden, record=record, dirty=self.faults_by_key)
        self.acc = acc
        self.golden_sites = golden_sites or {}
        self.golden_gemm = golden_gemm or {}
        self.keep_operands = keep_operands
        self.gemm_cache: dict = {}
        self.sites: list[GemmSite] = []
        self.gemms = 0

    # ---- GEMMs -------------------------------------------------------------------
    def _site(self, eqn, key, scope, G, M, K, N, where="simulator") -> GemmSite:
        if key in self.golden_sites:
            return self.golden_sites[key]
        index = len(self.sites) if self.golden is None else -1
        site = GemmSite(index, self.site_name(eqn, scope), eqn.primitive.name, G, M, K, N,
                        tuple(eqn.outvars[0].aval.shape), key, where)
        if self.golden is None:
            self.sites.append(site)
        return site

    def gemm(self, eqn, invals, key, scope, tainted):
        why = unroutable(eqn)
        if why:
            return self.native_gemm(eqn, invals, key, scope, tainted, why)[0]
        self.gemms += 1
        acc = self.acc
        out_dtype = eqn.outvars[0].aval.dtype
        scaled = acc.scaling != "none"
        if not tainted and key in self.golden_gemm:
            a, b, d, assemble, scales = self.golden_gemm[key]
        else:
            if not scaled and np.dtype(invals[0].dtype) == np.dtype(invals[1].dtype):
                # round first: the lowering may duplicate elements (im2col)
                lhs, rhs = self._round(invals[0]), self._round(invals[1])
            else:
                lhs, rhs = promote(*(np.asarray(x) for x in invals))
                if not scaled:
                    lhs, rhs = acc.round_operand(lhs), acc.round_operand(rhs)
            if eqn.primitive.name == "dot_general":
                a, b, assemble = lower_dot_general(lhs, rhs, eqn.params["dimension_numbers"])
            else:
                a, b, assemble = lower_conv(lhs, rhs, **eqn.params)
            scales = None
            if scaled:  # scales follow the GEMM's layout (rows of A, columns of B, blocks of K)
                a, b, scales = acc.quantize(a, b)
            d = acc.scaled_gemm(a, b, scales)
        site = self._site(eqn, key, scope, a.shape[0], a.shape[1], a.shape[2], b.shape[2])
        if self.record and self.keep_operands:
            for x in (a, b, d):
                x.setflags(write=False)
            self.gemm_cache[key] = (a, b, d, assemble, scales)
        faults = list(self.faults_by_key.get(key, ())) + list(self.faults_by_index.get(site.index, ()))
        scale_faults = [f for f in faults if isinstance(f, ScaleBitFlip)]
        if scale_faults:
            for f in scale_faults:
                scales = f.apply_scales(scales, site)
            if scales.kind == "block":  # the scales act inside the dot product: rerun it
                d = acc.scaled_gemm(a, b, scales)
        for f in faults:
            if not isinstance(f, ScaleBitFlip):
                d.setflags(write=False)
                d = f.apply(GemmCall(site, a, b, d, acc))
        return assemble(acc.dequantize(d, scales)).astype(out_dtype)

    def _round(self, x):
        """acc.round_operand(x), from the cache when x is one of the cached arguments."""
        hit = self.round_cache.get(id(x))
        if hit is not None and hit[0] is x:
            if hit[1] is None:
                r = self.acc.round_operand(x)
                r.setflags(write=False)
                self.round_cache[id(x)] = (x, r)
                return r
            return hit[1]
        return self.acc.round_operand(x)

    def native_gemm(self, eqn, invals, key, scope, tainted, why):
        outs = self.bind_or_refuse(eqn, invals, why, self.fallback, "the simulator")
        shape = _native_shape(eqn, invals)
        site = self._site(eqn, key, scope, *shape, where="native")
        if self.faults_by_key.get(key) or (site.index >= 0 and self.faults_by_index.get(site.index)):
            raise ValueError(f"faults must target GEMMs run on the simulator, not GEMM {site.index} "
                             f"({site.name}), which ran natively")
        return outs


def _native_shape(eqn, invals) -> tuple:
    """(G, M, K, N) of a natively run GEMM (zeros where it has no 2-D GEMM form)."""
    if eqn.primitive.name == "dot_general" and len(invals) == 2:
        a, b, _ = lower_dot_general(np.empty(np.shape(invals[0]), np.uint8), np.empty(np.shape(invals[1]), np.uint8),
                                    eqn.params["dimension_numbers"])
        return a.shape[0], a.shape[1], a.shape[2], b.shape[2]
    return 0, 0, 0, 0


def _check_faults(faults):
    if isinstance(faults, GEMM_FAULTS):
        faults = (faults,)
    if not isinstance(faults, (tuple, list)):
        raise TypeError(f"faults must be a sequence of GEMM faults, not {type(faults).__name__}")
    for f in faults:
        if not isinstance(f, GEMM_FAULTS):
            raise TypeError(f"faults must hold {', '.join(c.__name__ for c in GEMM_FAULTS)} values, "
                            f"not {type(f).__name__}")
    return tuple(faults)


def _by_index(faults):
    out: dict = {}
    for f in faults:
        out.setdefault(f.gemm, []).append(f)
    return out


def _is_dynamic(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic))


class AcceleratedFunction:
    """``fn`` with its GEMMs run by the simulated accelerator (see :func:`accelerated`)."""

    def __init__(self, fn, accelerator: Accelerator, faults=(), fallback: str = "error", matmul=None):
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an Accelerator, not {type(accelerator).__name__}")
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, not {fallback!r}")
        if matmul is not None and (accelerator.engine != "jax" or not callable(matmul)):
            raise TypeError(f"matmul must be a callable with Accelerator(engine='jax'), not {type(matmul).__name__} "
                            f"with engine={accelerator.engine!r}")
        self.fallback = fallback
        self.matmul = matmul
        self.fn = fn
        self.accelerator = accelerator
        self.faults = _check_faults(faults)
        if accelerator.engine == "jax" and not all(isinstance(f, (OutputBitFlip, ScaleBitFlip)) for f in self.faults):
            raise TypeError(f"faults must be OutputBitFlip or ScaleBitFlip values on engine='jax' (they act inside "
                            f"the JAX computation; the other faults run on engine='numba' or through "
                            f".trace().inject), not {', '.join(sorted({type(f).__name__ for f in self.faults}))}")
        self._jaxprs: dict = {}
        self._round_cache: dict = {}
        self._jitted: dict = {}

    def __repr__(self):
        fb = "" if self.fallback == "error" else f", fallback={self.fallback!r}"
        return (f"accelerated({getattr(self.fn, '__name__', self.fn)!r}, {self.accelerator!r}, "
                f"faults={self.faults!r}{fb})")

    def _split(self, args, kwargs):
        """(flat function of the dynamic leaves, dynamic leaves, hashable key of the
        rest or None): array leaves are dynamic, other leaves static."""
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        dyn_mask = tuple(_is_dynamic(x) for x in leaves)
        dyn = [x for x, m in zip(leaves, dyn_mask) if m]
        static = tuple(x for x, m in zip(leaves, dyn_mask) if not m)
        try:
            ck = (treedef, dyn_mask, static)
            hash(ck)
        except TypeError:
            ck = None

        def flat(*dyn_leaves):
            it = iter(dyn_leaves)
            full = [next(it) if m else s for m, s in zip(dyn_mask, _iter_static(leaves, dyn_mask))]
            a, k = jax.tree_util.tree_unflatten(treedef, full)
            return self.fn(*a, **k)

        return flat, dyn, ck

    def _prepare(self, args, kwargs):
        """(closed jaxpr, dynamic leaves, output treedef) for these arguments."""
        for x in jax.tree_util.tree_leaves((args, kwargs)):
            if isinstance(x, jax.core.Tracer):
                raise TypeError(
                    "an accelerated function must be called on concrete arrays, not traced by jax.jit, jax.grad "
                    "or jax.vmap (it runs the GEMMs eagerly on the simulator, outside XLA); call it outside "
                    "jit/grad, and to batch, vmap the plain function first: accelerated(jax.vmap(fn), acc); "
                    "or use Accelerator(engine='jax'), whose accelerated functions JAX can transform")
        flat, dyn, ck = self._split(args, kwargs)
        ck = None if ck is None else ck + (_signature(dyn),)
        if ck is not None and ck in self._jaxprs:
            cj, out_tree = self._jaxprs[ck]
            return cj, dyn, out_tree
        cj, out_shape = jax.make_jaxpr(flat, return_shape=True)(*dyn)
        out_tree = jax.tree_util.tree_structure(out_shape)
        if ck is not None:
            self._jaxprs[ck] = (cj, out_tree)
        return cj, dyn, out_tree

    def _cache_for(self, cj, dyn) -> dict:
        """The operand-rounding cache for a call on these arguments.

        The jax arrays among the arguments and the jaxpr's constants (weights, mostly)
        are immutable, so each one's rounded value is kept, keyed by identity and
        holding the array itself (so the id cannot be reused), for as long as calls
        pass the same array.  Entries of arrays no longer passed are dropped; numpy
        arguments (mutable) are never cached."""
        keep = {id(x): x for x in list(dyn) + list(cj.consts) if isinstance(x, jax.Array)}
        cache = self._round_cache
        for k in [k for k, v in cache.items() if keep.get(k) is not v[0]]:
            del cache[k]
        for k, x in keep.items():
            cache.setdefault(k, (x, None))
        return cache

    def _run(self, args, kwargs, **kw):
        cj, dyn, out_tree = self._prepare(args, kwargs)
        it = _Interpreter(self.accelerator, fallback=self.fallback, round_cache=self._cache_for(cj, dyn), **kw)
        outs, taints = it.run(cj, dyn)
        return it, outs, taints, out_tree

    # ---- the JAX engine -------------------------------------------------------------
    def _traced(self, args, kwargs, with_flips: bool):
        """(jitted function ``run(flips, *dyn)`` -> output pytree, dynamic leaves, info
        dict that receives the GEMM sites when it is traced), for engine='jax'."""
        flat, dyn, ck = self._split(args, kwargs)
        # per shape signature: a jitted function (and the sites its trace records) serves
        # one set of shapes, so the sites never describe another call's GEMMs
        ck = None if ck is None else ck + (_signature(dyn), with_flips)
        hit = self._jitted.get(ck) if ck is not None else None
        if hit is not None:
            return hit[0], dyn, hit[1]
        info: dict = {}

        def run(flips, *dyn_leaves):
            cj, out_shape = jax.make_jaxpr(flat, return_shape=True)(*dyn_leaves)
            it = JaxInterpreter(self.accelerator, flips=flips if with_flips else None, fallback=self.fallback,
                                matmul=self.matmul)
            outs, _ = it.run(cj, dyn_leaves)
            info["sites"] = tuple(it.sites)
            return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), outs)

        fn = jax.jit(run)
        if ck is not None:
            self._jitted[ck] = (fn, info)
        return fn, dyn, info

    def jax_gemms(self, *args, **kwargs) -> tuple[GemmSite, ...]:
        """The GEMMs of ``fn(*args, **kwargs)`` as the JAX engine sees them (engine='jax';
        traced, nothing runs): ``where`` is ``"jax"`` or ``"native"``; GEMMs inside
        ``cond``/``while``/``scan`` bodies are not entered (they need fallback='native').
        The indices are the ``gemm`` of output bit flips given as data."""
        fn, dyn, info = self._traced(args, kwargs, True)
        jax.eval_shape(fn, jnp.zeros((0, len(FLIP_FIELDS)), jnp.int32), *dyn)
        return info["sites"]

    def inject_many(self, faults, *args, chunk: int = 64, **kwargs):
        """Many value-level trials in vmapped, jitted calls (engine='jax').

        Args:
            faults: a sequence of trials, each an :class:`OutputBitFlip` or
                :class:`ScaleBitFlip` or a sequence of them (faults of one trial); or an
                int array (T, 4) or (T, F, 4) of rows (gemm, target, index, bit)
                (:data:`models.FLIP_FIELDS`, :func:`models.flip_array`; F faults per
                trial; a row with gemm -1 does nothing).  ``gemm`` indexes
                :meth:`jax_gemms`.
            args, kwargs: the function's arguments (shared by all trials).
            chunk: trials per vmapped call (memory grows with it).
        Returns:
            ``fn``'s output pytree with a leading axis of T trials; trial t equals
            ``accelerated(fn, acc, faults=<its faults>)(*args)`` bit for bit.
        Raises:
            ValueError for a fault outside the GEMMs, their results or scales.
        """
        if self.accelerator.engine != "jax":
            raise ValueError("inject_many needs Accelerator(engine='jax'); on engine='numba' use "
                             "trace(...).inject per trial")
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f"chunk must be an int >= 1, not {chunk!r}")
        sites = self.jax_gemms(*args, **kwargs)
        width = len(FLIP_FIELDS)
        if isinstance(faults, (list, tuple)):
            trials = [tuple(t) if isinstance(t, (list, tuple)) else (t,) for t in faults]
            most = max((len(t) for t in trials), default=1)
            rows = np.full((len(trials), most, width), -1, np.int32)
            for i, t in enumerate(trials):
                rows[i, :len(t)] = flip_array(t, sites, self.accelerator)
        else:
            rows = np.asarray(faults)
            if not np.issubdtype(rows.dtype, np.integer):
                raise TypeError(f"faults must be fault values or an int array, not dtype {rows.dtype}")
            if rows.ndim == 2:
                rows = rows[:, None, :]
            if rows.ndim != 3 or rows.shape[2] != width:
                raise ValueError(f"faults must have shape (T, {width}) or (T, F, {width}), not {rows.shape}")
            check_flip_rows(rows.reshape(-1, width), sites, self.accelerator)
            rows = rows.astype(np.int32)
        fn, dyn, _ = self._traced(args, kwargs, True)
        batched = self._jitted.setdefault(("vmap", id(fn)), (jax.jit(jax.vmap(fn, in_axes=(0,) + (None,) * len(dyn))),
                                                             None))[0]
        T = rows.shape[0]
        if T == 0:
            raise ValueError("faults must hold at least one trial, not none")
        chunk = min(chunk, T)
        # the last chunk padded with no-op rows (gemm -1): every call has one shape, one compile
        padded = np.full((-(-T // chunk) * chunk,) + rows.shape[1:], -1, np.int32)
        padded[:T] = rows
        outs = [batched(jnp.asarray(padded[i:i + chunk]), *dyn) for i in range(0, padded.shape[0], chunk)]
        return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs)[:T], *outs)

    def __call__(self, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on the accelerator, with this function's faults.

        Returns ``fn``'s output pytree (jax arrays of the dtypes ``fn`` returns).  On
        ``engine="jax"`` this is one jit-compiled JAX computation (compiled once per
        argument structure), and the call may itself be traced by ``jax.jit``,
        ``jax.vmap`` or ``jax.grad``.
        """
        if self.accelerator.engine == "jax":
            with_flips = bool(self.faults)
            fn, dyn, _ = self._traced(args, kwargs, with_flips)
            rows = np.zeros((0, len(FLIP_FIELDS)), np.int32)
            if with_flips:
                rows = flip_array(self.faults, self.jax_gemms(*args, **kwargs), self.accelerator)
            return fn(jnp.asarray(rows), *dyn)
        _, outs, _, out_tree = self._run(args, kwargs, faults_by_index=_by_index(self.faults),
                                         keep_operands=False)
        return jax.tree_util.tree_unflatten(out_tree, [jnp.asarray(x) for x in outs])

    def gemms(self, *args, **kwargs) -> tuple[GemmSite, ...]:
        """The GEMM executions of ``fn(*args, **kwargs)`` in order (runs it fault-free)."""
        it, _, _, _ = self._run(args, kwargs, keep_operands=False)
        return tuple(it.sites)

    def trace(self, *args, keep_operands: bool = True, **kwargs) -> "GoldenTrace":
        """Run fault-free, keeping every intermediate for fast faulty re-runs.

        ``keep_operands`` also keeps each GEMM's rounded operands and result, so a
        fault on an untainted GEMM skips rounding, lowering and the GEMM itself.
        The faults given to :func:`accelerated` are not applied here.
        """
        cj, dyn, out_tree = self._prepare(args, kwargs)
        it = _Interpreter(self.accelerator, record=True, keep_operands=keep_operands, fallback=self.fallback,
                          round_cache=self._cache_for(cj, dyn))
        outs, _ = it.run(cj, dyn)
        return GoldenTrace(self, cj, dyn, out_tree, outs, it.cache, it.gemm_cache, tuple(it.sites))


def _signature(dyn) -> tuple:
    """(shape, dtype, weak type) of each dynamic leaf (concrete arrays or tracers)."""
    return tuple((tuple(np.shape(x)), np.dtype(x.dtype), bool(getattr(getattr(x, "aval", x), "weak_type", False)))
                 for x in dyn)


def _iter_static(leaves, mask):
    for x, m in zip(leaves, mask):
        yield None if m else x


class GoldenTrace:
    """A cached fault-free run of an accelerated function on fixed inputs.

    Attributes:
        outputs: the function's output pytree (jax arrays).
        gemms: tuple of :class:`GemmSite`, in execution order.
        accelerator: the :class:`Accelerator`.
    """

    def __init__(self, af, cj, dyn, out_tree, outs, cache, gemm_cache, sites):
        self._af, self._cj, self._dyn, self._out_tree = af, cj, dyn, out_tree
        self._flat = outs
        self._cache, self._gemm_cache = cache, gemm_cache
        self.gemms = sites
        self._by_key = {s.key: s for s in sites}
        self.accelerator = af.accelerator
        self.outputs = jax.tree_util.tree_unflatten(out_tree, [jnp.asarray(x) for x in outs])

    def operands(self, gemm: int):
        """(a (G, M, K), b (G, K, N), d (G, M, N)) of a GEMM: rounded operands in the
        input dtype and the fault-free result in the accumulator dtype (read-only)."""
        site = self.gemms[gemm]
        if site.where != "simulator":
            raise ValueError(f"gemm must be a GEMM run on the simulator, not {gemm} ({site.name}), which ran natively")
        key = site.key
        if key not in self._gemm_cache:
            raise ValueError("operands need trace(..., keep_operands=True)")
        a, b, d, _, _ = self._gemm_cache[key]
        return a, b, d

    def scales(self, gemm: int):
        """The :class:`models.Scales` of a GEMM (None with ``scaling="none"``); needs
        ``trace(..., keep_operands=True)``.  With scaling, :meth:`operands` gives the
        quantised operands and D before the epilogue (``"tensor"``, ``"row"``: the
        unscaled accumulator; ``"block"``: the accumulated scaled sum)."""
        self.operands(gemm)
        return self._gemm_cache[self.gemms[gemm].key][4]

    def drop_intermediates(self) -> None:
        """Free every equation's stored outputs (GEMM operands and results, the sites and
        the outputs stay): for a caller that recomputes faults elsewhere (e.g. on traces
        of sub-batches) and needs this trace only for :meth:`operands`.  :meth:`inject`
        then raises ValueError."""
        self._cache = None

    def inject(self, faults, *, return_stats: bool = False):
        """Re-run with faults, recomputing only what they can reach.

        Args:
            faults: a GEMM fault or a sequence of them (:class:`OutputBitFlip`,
                :class:`ReplaceGemmOutput`, :class:`ReplaceTile`, :class:`ScaleBitFlip`;
                D faults act on D before the scaling epilogue); ``gemm`` indexes
                :attr:`gemms`.
            return_stats: also return an :class:`InjectStats`.
        Returns:
            The output pytree (jax arrays), bitwise equal to
            ``accelerated(fn, acc, faults)(*args)``; with ``(outputs, stats)`` when
            ``return_stats``.
        """
        faults = _check_faults(faults)
        if self._cache is None:
            raise ValueError("inject needs the trace's intermediates, which drop_intermediates() freed")
        by_key: dict = {}
        for f in faults:
            if not 0 <= f.gemm < len(self.gemms):
                raise ValueError(f"gemm must be in [0, {len(self.gemms)}), not {f.gemm}")
            if self.gemms[f.gemm].where != "simulator":
                raise ValueError(f"faults must target GEMMs run on the simulator, not GEMM {f.gemm} "
                                 f"({self.gemms[f.gemm].name}), which ran natively")
            by_key.setdefault(self.gemms[f.gemm].key, []).append(f)
        it = _Interpreter(self.accelerator, golden=self._cache, golden_sites=self._by_key,
                          golden_gemm=self._gemm_cache, faults_by_key=by_key, fallback=self._af.fallback,
                          round_cache=self._af._cache_for(self._cj, self._dyn))
        outs, taints = it.run(self._cj, self._dyn)
        masked = all(_same(o, g) for o, g in zip(outs, self._flat))
        res = jax.tree_util.tree_unflatten(self._out_tree, [jnp.asarray(x) for x in outs])
        if return_stats:
            return res, InjectStats(it.eqns, it.gemms, masked)
        return res


def accelerated(fn, accelerator: Accelerator, faults=(), *, fallback: str = "error",
                matmul=None) -> AcceleratedFunction:
    """Run a JAX function with its matmuls and convolutions on the simulated accelerator.

    Every ``dot_general`` and ``conv_general_dilated`` with a floating operand in
    ``fn`` (nested jit, custom_jvp/vjp, checkpoint, cond, while and scan included;
    float64/32/16, bfloat16 and float8 alike; a mixed int x float GEMM has its
    operands converted to their common type as JAX promotes them, then rounded) and of
    any dimension numbers or layout has its operands rounded to
    ``accelerator.input_format``, is lowered to 2-D GEMMs
    (batch dims and feature groups become independent GEMMs, convolutions go through
    im2col) and runs through :func:`simulator.matmul` with a zero C in the
    accumulator format; D is cast to the primitive's output dtype.  Everything else
    runs natively in JAX.

    Args:
        fn: any function of pytrees of arrays (plain JAX, ``model.apply``, an
            Equinox module).  Python scalars and other non-array leaves in the
            arguments are treated as static.
        accelerator: an :class:`Accelerator`.
        faults: GEMM faults applied on every call (``gemm`` = execution index).
        fallback: ``"error"`` (default): a GEMM the bridge cannot route (complex
            operands, a gradient-only convolution, ``ragged_dot``, GEMMs inside a
            primitive the walker cannot enter) raises NotImplementedError naming the
            primitive and its shapes; ``"native"``: such GEMMs run natively in JAX and
            are listed with ``GemmSite.where == "native"`` (faults cannot target them).
        matmul: ``engine="jax"`` only: a traceable ``matmul(a, b)`` computing each
            GEMM's D (G, M, N) (accumulator dtype) from its rounded operands a
            (G, M, K) and b (G, K, N) in place of the JAX engine, e.g. a faulty chip
            (:func:`models.chip_matmul`); the gradient stays straight-through.
    Returns:
        An :class:`AcceleratedFunction`: call it like ``fn``; ``.gemms(*args)``
        enumerates GEMMs, ``.trace(*args)`` returns a :class:`GoldenTrace` for fast
        fault injection.  On ``engine="numba"`` it runs eagerly on concrete values:
        calling it under ``jax.jit``, ``jax.grad`` or ``jax.vmap`` raises TypeError
        (vmap the plain function first: ``accelerated(jax.vmap(fn), acc)``).  On
        ``engine="jax"`` a call is one jit-compiled JAX computation that those
        transformations accept (bit for bit the eager result; gradients
        straight-through; GEMMs inside ``cond``/``while``/``scan`` need
        ``fallback="native"``); ``.inject_many(flips, *args)`` runs many output-bit-flip
        trials in one vmapped call.
    """
    return AcceleratedFunction(fn, accelerator, faults, fallback, matmul)
