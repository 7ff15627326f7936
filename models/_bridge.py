"""Run a JAX function with its GEMMs computed by the simulator: a jaxpr interpreter.

``accelerated(fn, accelerator)`` traces ``fn`` to a jaxpr and evaluates it equation by
equation on concrete values.  ``dot_general`` and ``conv_general_dilated`` on floating
operands are rounded to the accelerator's input format, lowered to 2-D GEMMs
(:mod:`models._lowering`) and run by :func:`simulator.matmul`; every other primitive
is bound natively.  Nested jaxprs (jit/pjit, closed_call, custom_jvp_call,
custom_vjp_call, checkpoint, cond, while, scan) are interpreted recursively, so the
GEMMs inside them run on the accelerator too.

Every equation execution has a *key*: its path of equation indices through the nested
jaxprs, with loop iterations and cond branches in it.  A fault-free run
(:meth:`AcceleratedFunction.trace`) stores every equation's outputs by key; a faulty
run (:meth:`GoldenTrace.inject`) marks values that may differ from that run as
*tainted* and recomputes only equations with a tainted input (or a fault under them),
reusing the stored outputs for everything else.  A recomputed output that comes out
bitwise equal to the stored one is untainted again, so a fault that is masked stops
the recomputation right there.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, Literal

from ._accelerator import Accelerator
from ._faults import GEMM_FAULTS, GemmCall, GemmSite
from ._lowering import lower_conv, lower_dot_general

__all__ = ["accelerated", "AcceleratedFunction", "GoldenTrace", "InjectStats"]

_GEMM_PRIMS = ("dot_general", "conv_general_dilated")
_CALL_PRIMS = {  # primitive name -> param holding the jaxpr it calls with all its operands
    "pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
    "checkpoint": "jaxpr", "remat": "jaxpr", "remat2": "jaxpr", "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
}


def _open(j):
    """(Jaxpr, consts) of a Jaxpr or ClosedJaxpr."""
    if isinstance(j, ClosedJaxpr):
        return j.jaxpr, list(j.consts)
    return j, []


def _sub_jaxprs(params):
    for v in params.values():
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(x, (Jaxpr, ClosedJaxpr)):
                yield _open(x)[0]


def _has_gemm(jaxpr: Jaxpr) -> bool:
    return any(e.primitive.name in _GEMM_PRIMS or any(_has_gemm(s) for s in _sub_jaxprs(e.params))
               for e in jaxpr.eqns)


def _bits(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind in "fc" and x.dtype.itemsize in (1, 2, 4, 8):
        return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))
    return x


def _same(x, y) -> bool:
    """Bitwise equality of two arrays (NaN payloads included)."""
    x, y = np.asarray(x), np.asarray(y)
    return x.shape == y.shape and x.dtype == y.dtype and np.array_equal(_bits(x), _bits(y))


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


class _Interpreter:
    """One evaluation of a jaxpr; see the module docstring for keys and taint.

    golden: key -> outputs of a fault-free run (None: compute everything).
    record: store outputs (and GEMM operands) by key, number GEMM sites.
    faults_by_index / faults_by_key: faults to apply at GEMM index / key.
    """

    def __init__(self, acc: Accelerator, *, golden=None, golden_sites=None, golden_gemm=None, record=False,
                 faults_by_index=None, faults_by_key=None, keep_operands=True):
        self.acc = acc
        self.golden = golden
        self.golden_sites = golden_sites or {}
        self.golden_gemm = golden_gemm or {}
        self.record = record
        self.keep_operands = keep_operands
        self.cache: dict = {}
        self.gemm_cache: dict = {}
        self.sites: list[GemmSite] = []
        self.faults_by_index = faults_by_index or {}
        self.faults_by_key = faults_by_key or {}
        self.fault_prefixes = {k[:i] for k in self.faults_by_key for i in range(1, len(k) + 1)}
        self.eqns = 0
        self.gemms = 0

    # ---- jaxpr evaluation ------------------------------------------------------
    def eval(self, jaxpr: Jaxpr, consts, args, taints, prefix: tuple, scope: str):
        env, tenv = {}, {}

        def read(v):
            return (v.val, False) if isinstance(v, Literal) else (env[v], tenv[v])

        for v, x in zip(jaxpr.constvars, consts):
            env[v], tenv[v] = x, False
        for v, x, t in zip(jaxpr.invars, args, taints):
            env[v], tenv[v] = x, t
        golden = self.golden
        for i, eqn in enumerate(jaxpr.eqns):
            key = prefix + (i,)
            ins = [read(v) for v in eqn.invars]
            invals = [x for x, _ in ins]
            intaint = [t for _, t in ins]
            tainted = any(intaint)
            if golden is not None and not tainted and key in golden and key not in self.fault_prefixes:
                outs, outt = golden[key], [False] * len(eqn.outvars)
            else:
                outs, outt = self.eval_eqn(eqn, invals, intaint, key, scope)
                if golden is not None and key in golden:
                    ref = golden[key]
                    outt = [t and not _same(o, r) for o, r, t in zip(outs, ref, outt)]
                if self.record:
                    self.cache[key] = outs
            for v, x, t in zip(eqn.outvars, outs, outt):
                if not isinstance(v, DropVar):
                    env[v], tenv[v] = x, t
        outs = [read(v) for v in jaxpr.outvars]
        return [x for x, _ in outs], [t for _, t in outs]

    def eval_eqn(self, eqn, invals, intaint, key, scope):
        """Evaluate one equation; returns (outputs list, taint list)."""
        self.eqns += 1
        prim = eqn.primitive
        name = prim.name
        tainted = any(intaint)
        if name in _GEMM_PRIMS and all(np.dtype(v.aval.dtype).kind == "f" for v in eqn.invars):
            return [self.gemm(eqn, invals, key, scope, tainted)], [tainted or key in self.faults_by_key]
        if name in _CALL_PRIMS and _CALL_PRIMS[name] in eqn.params:
            jaxpr, consts = _open(eqn.params[_CALL_PRIMS[name]])
            sub = eqn.params.get("name")
            sub_scope = f"{scope}/{sub}" if sub and scope else (sub or scope)
            nin = len(jaxpr.invars)
            return self.eval(jaxpr, consts, invals[-nin:] if nin else [], intaint[-nin:] if nin else [],
                             key, sub_scope)
        if name == "cond":
            branches = eqn.params["branches"]
            idx = int(np.clip(int(np.asarray(invals[0])), 0, len(branches) - 1))
            jaxpr, consts = _open(branches[idx])
            outs, outt = self.eval(jaxpr, consts, invals[1:], intaint[1:], key + ("br", idx), scope)
            return outs, [t or intaint[0] for t in outt]
        if name == "while":
            return self.eval_while(eqn, invals, intaint, key, scope)
        if name == "scan":
            return self.eval_scan(eqn, invals, intaint, key, scope)
        if any(_has_gemm(s) for s in _sub_jaxprs(eqn.params)):
            raise NotImplementedError(f"the bridge cannot route GEMMs inside a {name!r} primitive")
        outs = prim.bind(*invals, **prim.get_bind_params(eqn.params))
        outs = list(outs) if prim.multiple_results else [outs]
        return outs, [tainted] * len(outs)

    def eval_while(self, eqn, invals, intaint, key, scope):
        p = eqn.params
        cj, cc = _open(p["cond_jaxpr"])
        bj, bc = _open(p["body_jaxpr"])
        nc, nb = p["cond_nconsts"], p["body_nconsts"]
        cconsts, ct = invals[:nc], intaint[:nc]
        bconsts, bt = invals[nc:nc + nb], intaint[nc:nc + nb]
        carry, carry_t = invals[nc + nb:], intaint[nc + nb:]
        t = 0
        while True:
            (pred,), (pt,) = self.eval(cj, cc, cconsts + carry, ct + carry_t, key + ("c", t), scope)
            if not bool(np.asarray(pred)):
                break
            carry, carry_t = self.eval(bj, bc, bconsts + carry, bt + carry_t, key + ("b", t), scope)
            carry_t = [x or pt for x in carry_t]
            t += 1
        return carry, carry_t

    def eval_scan(self, eqn, invals, intaint, key, scope):
        p = eqn.params
        jaxpr, consts = _open(p["jaxpr"])
        n_c, n_carry, length = p["num_consts"], p["num_carry"], p["length"]
        cvals, ct = invals[:n_c], intaint[:n_c]
        carry, carry_t = invals[n_c:n_c + n_carry], intaint[n_c:n_c + n_carry]
        xs, xs_t = [np.asarray(x) for x in invals[n_c + n_carry:]], intaint[n_c + n_carry:]
        ys_avals = [v.aval for v in eqn.outvars[n_carry:]]
        ys, ys_t = [[] for _ in ys_avals], [False] * len(ys_avals)
        steps = range(length - 1, -1, -1) if p["reverse"] else range(length)
        for t in steps:
            outs, outt = self.eval(jaxpr, consts, cvals + carry + [x[t] for x in xs], ct + carry_t + xs_t,
                                   key + ("s", t), scope)
            carry, carry_t = outs[:n_carry], outt[:n_carry]
            for j, (y, yt) in enumerate(zip(outs[n_carry:], outt[n_carry:])):
                ys[j].append(np.asarray(y))
                ys_t[j] = ys_t[j] or yt
        if p["reverse"]:
            ys = [y[::-1] for y in ys]
        stacked = [np.stack(y) if y else np.zeros(a.shape, a.dtype) for y, a in zip(ys, ys_avals)]
        return list(carry) + stacked, list(carry_t) + ys_t

    # ---- GEMMs -------------------------------------------------------------------
    def _site(self, eqn, key, scope, G, M, K, N) -> GemmSite:
        if key in self.golden_sites:
            return self.golden_sites[key]
        ns = str(eqn.source_info.name_stack)
        name = "/".join(s for s in (scope, ns, eqn.primitive.name) if s)
        index = len(self.sites) if self.golden is None else -1
        site = GemmSite(index, name, eqn.primitive.name, G, M, K, N, tuple(eqn.outvars[0].aval.shape), key)
        if self.golden is None:
            self.sites.append(site)
        return site

    def gemm(self, eqn, invals, key, scope, tainted):
        self.gemms += 1
        acc = self.acc
        out_dtype = eqn.outvars[0].aval.dtype
        if not tainted and key in self.golden_gemm:
            a, b, d, assemble = self.golden_gemm[key]
        else:
            lhs, rhs = (acc.round_operand(x) for x in invals)
            if eqn.primitive.name == "dot_general":
                a, b, assemble = lower_dot_general(lhs, rhs, eqn.params["dimension_numbers"])
            else:
                a, b, assemble = lower_conv(lhs, rhs, **eqn.params)
            d = acc.gemm(a, b)
        site = self._site(eqn, key, scope, a.shape[0], a.shape[1], a.shape[2], b.shape[2])
        if self.record and self.keep_operands:
            for x in (a, b, d):
                x.setflags(write=False)
            self.gemm_cache[key] = (a, b, d, assemble)
        faults = list(self.faults_by_key.get(key, ())) + list(self.faults_by_index.get(site.index, ()))
        for f in faults:
            d.setflags(write=False)
            d = f.apply(GemmCall(site, a, b, d, acc))
        return assemble(d).astype(out_dtype)


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

    def __init__(self, fn, accelerator: Accelerator, faults=()):
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an Accelerator, not {type(accelerator).__name__}")
        self.fn = fn
        self.accelerator = accelerator
        self.faults = _check_faults(faults)
        self._jaxprs: dict = {}

    def __repr__(self):
        return f"accelerated({getattr(self.fn, '__name__', self.fn)!r}, {self.accelerator!r}, faults={self.faults!r})"

    def _prepare(self, args, kwargs):
        """(closed jaxpr, dynamic leaves, output treedef) for these arguments."""
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        dyn_mask = tuple(_is_dynamic(x) for x in leaves)
        dyn = [x for x, m in zip(leaves, dyn_mask) if m]
        static = tuple(x for x, m in zip(leaves, dyn_mask) if not m)
        sig = tuple((np.shape(x), np.dtype(x.dtype), getattr(x, "weak_type", False)) for x in dyn)
        try:
            ck = (treedef, dyn_mask, static, sig)
            hash(ck)
        except TypeError:
            ck = None
        if ck is not None and ck in self._jaxprs:
            cj, out_tree = self._jaxprs[ck]
            return cj, dyn, out_tree

        def flat(*dyn_leaves):
            it = iter(dyn_leaves)
            full = [next(it) if m else s for m, s in zip(dyn_mask, _iter_static(leaves, dyn_mask))]
            a, k = jax.tree_util.tree_unflatten(treedef, full)
            return self.fn(*a, **k)

        cj, out_shape = jax.make_jaxpr(flat, return_shape=True)(*dyn)
        out_tree = jax.tree_util.tree_structure(out_shape)
        if ck is not None:
            self._jaxprs[ck] = (cj, out_tree)
        return cj, dyn, out_tree

    def _run(self, args, kwargs, **kw):
        cj, dyn, out_tree = self._prepare(args, kwargs)
        it = _Interpreter(self.accelerator, **kw)
        outs, taints = it.eval(cj.jaxpr, list(cj.consts), list(dyn), [False] * len(dyn), (), "")
        return it, outs, taints, out_tree

    def __call__(self, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on the accelerator, with this function's faults.

        Returns ``fn``'s output pytree (jax arrays of the dtypes ``fn`` returns).
        """
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
        it = _Interpreter(self.accelerator, record=True, keep_operands=keep_operands)
        outs, _ = it.eval(cj.jaxpr, list(cj.consts), list(dyn), [False] * len(dyn), (), "")
        return GoldenTrace(self, cj, dyn, out_tree, outs, it.cache, it.gemm_cache, tuple(it.sites))


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
        key = self.gemms[gemm].key
        if key not in self._gemm_cache:
            raise ValueError("operands need trace(..., keep_operands=True)")
        a, b, d, _ = self._gemm_cache[key]
        return a, b, d

    def inject(self, faults, *, return_stats: bool = False):
        """Re-run with faults, recomputing only what they can reach.

        Args:
            faults: a GEMM fault or a sequence of them (:class:`OutputBitFlip`,
                :class:`ReplaceGemmOutput`, :class:`ReplaceTile`); ``gemm`` indexes
                :attr:`gemms`.
            return_stats: also return an :class:`InjectStats`.
        Returns:
            The output pytree (jax arrays), bitwise equal to
            ``accelerated(fn, acc, faults)(*args)``; with ``(outputs, stats)`` when
            ``return_stats``.
        """
        faults = _check_faults(faults)
        by_key: dict = {}
        for f in faults:
            if not 0 <= f.gemm < len(self.gemms):
                raise ValueError(f"gemm must be in [0, {len(self.gemms)}), not {f.gemm}")
            by_key.setdefault(self.gemms[f.gemm].key, []).append(f)
        it = _Interpreter(self.accelerator, golden=self._cache, golden_sites=self._by_key,
                          golden_gemm=self._gemm_cache, faults_by_key=by_key)
        cj = self._cj
        outs, taints = it.eval(cj.jaxpr, list(cj.consts), list(self._dyn), [False] * len(self._dyn), (), "")
        masked = all(_same(o, g) for o, g in zip(outs, self._flat))
        res = jax.tree_util.tree_unflatten(self._out_tree, [jnp.asarray(x) for x in outs])
        if return_stats:
            return res, InjectStats(it.eqns, it.gemms, masked)
        return res


def accelerated(fn, accelerator: Accelerator, faults=()) -> AcceleratedFunction:
    """Run a JAX function with its matmuls and convolutions on the simulated accelerator.

    Every ``dot_general`` and ``conv_general_dilated`` with floating operands in
    ``fn`` (nested jit, custom_jvp/vjp, checkpoint, cond, while and scan included)
    has its operands rounded to ``accelerator.input_format``, is lowered to 2-D GEMMs
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
    Returns:
        An :class:`AcceleratedFunction`: call it like ``fn``; ``.gemms(*args)``
        enumerates GEMMs, ``.trace(*args)`` returns a :class:`GoldenTrace` for fast
        fault injection.  It runs eagerly on concrete values (it cannot itself be
        traced by ``jax.jit``/``grad``).
    """
    return AcceleratedFunction(fn, accelerator, faults)
