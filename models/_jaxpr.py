"""The jaxpr walker: evaluating a traced JAX function equation by equation.

This module owns how gemmfi walks a jaxpr — the bridge (:func:`models.accelerated`)
and the native value-level injector (:class:`faults.NativeValueInjector`) are both
subclasses of :class:`JaxprEvaluator` and differ only in what a GEMM does.

What the walker knows about jaxprs:

* GEMMs are ``dot_general`` and ``conv_general_dilated`` equations whose operands are
  all floating point (:data:`GEMM_PRIMITIVES`, :func:`is_gemm`); they go to the
  subclass's :meth:`JaxprEvaluator.gemm` hook, in execution order.
* Call primitives (jit/pjit, closed_call, core_call, checkpoint/remat,
  custom_jvp_call, custom_vjp_call) are entered, so their GEMMs reach the hook too.
* ``cond``, ``while`` and ``scan`` are entered on concrete values (``concrete=True``:
  eager evaluation, GEMMs inside loops and branches reach the hook once per
  execution); under tracing (``concrete=False``) they are bound whole, and one with
  a GEMM inside raises :class:`NotImplementedError`, as does any other primitive
  holding a GEMM in a sub-jaxpr.
* Every equation execution has a *key*: its path of equation indices through the
  nested jaxprs, with loop iterations (``("c", t)``, ``("b", t)``, ``("s", t)``) and
  cond branches (``("br", i)``) in it.

Incremental re-evaluation: given ``golden`` (key -> outputs of an earlier run of the
same jaxpr on the same inputs), a value that may differ from that run is *tainted*;
an equation with no tainted input and no ``dirty`` key under it reuses the stored
outputs, and a recomputed output bitwise equal to the stored one is untainted again
(so a masked fault stops the recomputation right there).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, Literal

__all__ = ["JaxprEvaluator", "GEMM_PRIMITIVES", "OTHER_GEMM_PRIMITIVES", "is_gemm", "is_floating"]

#: Primitives that are GEMMs when an operand is floating point (or complex).
GEMM_PRIMITIVES = ("dot_general", "conv_general_dilated")
#: Matrix-multiply primitives the walker knows but cannot lower to 2-D GEMMs.
OTHER_GEMM_PRIMITIVES = ("ragged_dot", "ragged_dot_general")
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
    return any(is_gemm(e) or e.primitive.name in OTHER_GEMM_PRIMITIVES
               or any(_has_gemm(s) for s in _sub_jaxprs(e.params)) for e in jaxpr.eqns)


def is_floating(dtype) -> bool:
    """Whether a dtype is a real floating-point type: numpy's float16/32/64 and the
    ``ml_dtypes`` types JAX uses (bfloat16, float8_*: numpy kind ``'V'``, not ``'f'``)."""
    return bool(jnp.issubdtype(np.dtype(dtype), jnp.floating))


def is_gemm(eqn) -> bool:
    """Whether a jaxpr equation is a GEMM: a :data:`GEMM_PRIMITIVES` primitive with a
    floating-point (any width, bfloat16 and float8 included) or complex operand; the
    other operand may be an integer (a mixed ``int8 @ bfloat16`` dot_general)."""
    return eqn.primitive.name in GEMM_PRIMITIVES and any(
        jnp.issubdtype(np.dtype(v.aval.dtype), jnp.inexact) for v in eqn.invars)


def _describe(eqn) -> str:
    """``"dot_general of bfloat16[4,8] x int8[8,3] -> bfloat16[4,3]"``: an equation's
    primitive and operand/result shapes, for error messages."""
    def t(v):
        return f"{np.dtype(v.aval.dtype).name}[{','.join(str(d) for d in v.aval.shape)}]"
    ins = " x ".join(t(v) for v in eqn.invars if hasattr(v.aval, "shape"))
    outs = ", ".join(t(v) for v in eqn.outvars if hasattr(v.aval, "shape"))
    return f"{eqn.primitive.name} of {ins} -> {outs}"


def _bits(x) -> np.ndarray:
    x = np.asarray(x)
    if (x.dtype.kind in "fc" or is_floating(x.dtype)) and x.dtype.itemsize in (1, 2, 4, 8):
        return x.view(np.dtype(f"uint{x.dtype.itemsize * 8}"))
    return x


def _same(x, y) -> bool:
    """Bitwise equality of two arrays (NaN payloads included)."""
    x, y = np.asarray(x), np.asarray(y)
    return x.shape == y.shape and x.dtype == y.dtype and np.array_equal(_bits(x), _bits(y))


class JaxprEvaluator:
    """One evaluation of a jaxpr (see the module docstring for keys and taint).

    Subclasses implement :meth:`gemm`; everything else is bound natively.

    Args:
        golden: key -> outputs (list of arrays) of an earlier run to reuse, or None
            (evaluate every equation).
        record: keep evaluated equations' outputs in :attr:`cache` by key (those a
            faulty run may read; the others as None, see :meth:`_kept`).
        dirty: keys of GEMM executions to recompute even with unchanged inputs, their
            output counting as tainted (where faults act).
        concrete: enter ``cond``/``while``/``scan`` on concrete values (eager runs);
            False under tracing.

    Attributes:
        cache: key -> outputs, filled when ``record``.
        eqns: equation executions evaluated (not reused from ``golden``).
    """

    #: Who walks, for error messages.
    label = "the jaxpr walker"

    def __init__(self, *, golden=None, record: bool = False, dirty=(), concrete: bool = True):
        self.golden = golden
        self.record = record
        self.dirty = frozenset(dirty)
        self._dirty_prefixes = {k[:i] for k in self.dirty for i in range(1, len(k) + 1)}
        self.concrete = concrete
        self.cache: dict = {}
        self.eqns = 0
        self._kept_by_jaxpr: dict = {}
        self._dead_by_jaxpr: dict = {}

    def gemm(self, eqn, invals: list, key: tuple, scope: str, tainted: bool):
        """The output of one GEMM execution (override).

        Args:
            eqn: the ``dot_general`` / ``conv_general_dilated`` equation.
            invals: its two operands (concrete arrays, or tracers under tracing).
            key: the execution's key; scope: the names of the calls it sits in,
                ``/``-joined; tainted: whether an operand may differ from ``golden``.
        """
        raise NotImplementedError

    def native_gemm(self, eqn, invals: list, key: tuple, scope: str, tainted: bool, why: str):
        """The outputs (a list) of a GEMM-bearing equation this walker cannot route
        (``why`` says why): a NotImplementedError naming the primitive and its shapes by
        default; a subclass may bind it natively instead."""
        raise NotImplementedError(f"{self.label} cannot route {_describe(eqn)}: {why}")

    @staticmethod
    def site_name(eqn, scope: str) -> str:
        """``"<scopes>/<name stack>/<primitive>"``: how a GEMM site is named."""
        ns = str(eqn.source_info.name_stack)
        return "/".join(s for s in (scope, ns, eqn.primitive.name) if s)

    def bind_or_refuse(self, eqn, invals: list, why: str, fallback: str, target: str) -> list:
        """For :meth:`native_gemm`: the equation bound natively when ``fallback`` is
        ``"native"``, else a NotImplementedError naming it, why, and the way out."""
        if fallback != "native":
            raise NotImplementedError(
                f"the bridge cannot route {_describe(eqn)} to {target} ({why}); pass fallback='native' to "
                f"accelerated() to run it natively (listed with where='native')")
        return self.bind(eqn, invals)

    def run(self, closed: ClosedJaxpr, args) -> tuple:
        """(outputs, taints) of a closed jaxpr on flat arguments (none tainted)."""
        args = list(args)
        return self.eval(closed.jaxpr, list(closed.consts), args, [False] * len(args), (), "")

    # ---- evaluation --------------------------------------------------------------
    def eval(self, jaxpr: Jaxpr, consts, args, taints, prefix: tuple, scope: str):
        """(outputs, taints) of a jaxpr whose equations' keys start with ``prefix``."""
        env, tenv = {}, {}

        def read(v):
            return (v.val, False) if isinstance(v, Literal) else (env[v], tenv[v])

        for v, x in zip(jaxpr.constvars, consts):
            env[v], tenv[v] = x, False
        for v, x, t in zip(jaxpr.invars, args, taints):
            env[v], tenv[v] = x, t
        golden = self.golden
        keep = self._kept(jaxpr, not prefix) if self.record else None
        dead_after = self._dead_after(jaxpr)
        for i, eqn in enumerate(jaxpr.eqns):
            key = prefix + (i,)
            ins = [read(v) for v in eqn.invars]
            invals = [x for x, _ in ins]
            intaint = [t for _, t in ins]
            tainted = any(intaint)
            if golden is not None and not tainted and key in golden and key not in self._dirty_prefixes:
                outs, outt = golden[key], [False] * len(eqn.outvars)
            else:
                if any(x is None for x in invals):  # the analysis in _kept says this cannot happen
                    raise RuntimeError(f"the golden run did not keep an input of {_describe(eqn)} that a faulty "
                                       f"run needs (key {key})")
                outs, outt = self.eval_eqn(eqn, invals, intaint, key, scope)
                if golden is not None and key in golden:
                    ref = golden[key]  # None: not kept, the taint stays (a later kept value re-checks)
                    outt = [t and (r is None or not _same(o, r)) for o, r, t in zip(outs, ref, outt)]
                if self.record:
                    self.cache[key] = [o if k else None for o, k in zip(outs, keep[i])]
            for v, x, t in zip(eqn.outvars, outs, outt):
                if not isinstance(v, DropVar):
                    env[v], tenv[v] = x, t
            for v in dead_after[i]:  # values no later equation reads: free them now
                del env[v], tenv[v]
        outs = [read(v) for v in jaxpr.outvars]
        return [x for x, _ in outs], [t for _, t in outs]

    def _dead_after(self, jaxpr: Jaxpr) -> list:
        """For each equation, the variables it reads for the last time (not outputs of
        the jaxpr): the walk frees them after it, so a long model holds only live values."""
        hit = self._dead_by_jaxpr.get(id(jaxpr))
        if hit is not None and hit[0] is jaxpr:
            return hit[1]
        last = {}
        for i, eqn in enumerate(jaxpr.eqns):
            for v in eqn.invars:
                if not isinstance(v, Literal):
                    last[v] = i
        outs = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
        dead = [[] for _ in jaxpr.eqns]
        for v, i in last.items():
            if v not in outs:
                dead[i].append(v)
        self._dead_by_jaxpr[id(jaxpr)] = (jaxpr, dead)
        return dead

    def _kept(self, jaxpr: Jaxpr, top: bool) -> list:
        """Which outputs of each equation a golden run keeps: those a faulty run may read
        untainted.  Taint starts at GEMM outputs (faults act there) and flows to what
        reads them; a faulty run recomputes an equation only when an input is tainted,
        and then reads its other inputs from the golden run.  So an input is kept when
        it is not the equation's only taintable input; every input of a GEMM or of an
        equation holding a jaxpr is kept (they may rerun on unchanged inputs), and so is
        every output of the jaxpr.  ``top``: the function's own jaxpr, whose inputs are
        never tainted (a nested jaxpr's may be).  A dropped value costs the recomputation
        one masking check (the next kept value does it)."""
        hit = self._kept_by_jaxpr.get(id(jaxpr))
        if hit is not None and hit[0] is jaxpr:
            return hit[1]
        taintable = set() if top else {v for v in jaxpr.invars}
        needed = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
        for eqn in jaxpr.eqns:
            ins = [v for v in eqn.invars if not isinstance(v, Literal)]
            gemm_like = is_gemm(eqn) or eqn.primitive.name in OTHER_GEMM_PRIMITIVES or list(_sub_jaxprs(eqn.params))
            t_ins = [v for v in ins if v in taintable]
            if gemm_like or len(t_ins) >= 2:
                needed.update(ins)
            else:
                needed.update(v for v in ins if v not in taintable)
            if gemm_like or t_ins:
                taintable.update(eqn.outvars)
        keep = [[v in needed for v in eqn.outvars] for eqn in jaxpr.eqns]
        self._kept_by_jaxpr[id(jaxpr)] = (jaxpr, keep)
        return keep

    def eval_eqn(self, eqn, invals, intaint, key, scope):
        """(outputs, taints) of one equation."""
        self.eqns += 1
        prim = eqn.primitive
        name = prim.name
        tainted = any(intaint)
        if is_gemm(eqn):
            return [self.gemm(eqn, invals, key, scope, tainted)], [tainted or key in self.dirty]
        if name in _CALL_PRIMS and _CALL_PRIMS[name] in eqn.params:
            jaxpr, consts = _open(eqn.params[_CALL_PRIMS[name]])
            sub = eqn.params.get("name")
            sub_scope = f"{scope}/{sub}" if sub and scope else (sub or scope)
            nin = len(jaxpr.invars)
            return self.eval(jaxpr, consts, invals[-nin:] if nin else [], intaint[-nin:] if nin else [],
                             key, sub_scope)
        if self.concrete:
            if name == "cond":
                branches = eqn.params["branches"]
                idx = int(np.clip(int(np.asarray(invals[0])), 0, len(branches) - 1))
                jaxpr, consts = _open(branches[idx])
                outs, outt = self.eval(jaxpr, consts, invals[1:], intaint[1:], key + ("br", idx), scope)
                return outs, [t or intaint[0] for t in outt]
            if name == "while":
                return self._eval_while(eqn, invals, intaint, key, scope)
            if name == "scan":
                return self._eval_scan(eqn, invals, intaint, key, scope)
        if name in OTHER_GEMM_PRIMITIVES:
            return self.native_gemm(eqn, invals, key, scope, tainted,
                                    f"{name!r} has no lowering to 2-D GEMMs"), [tainted] * len(eqn.outvars)
        if any(_has_gemm(s) for s in _sub_jaxprs(eqn.params)):
            return self.native_gemm(eqn, invals, key, scope, tainted,
                                    f"it holds GEMMs inside a {name!r} primitive, which the walker cannot "
                                    f"enter"), [tainted] * len(eqn.outvars)
        outs = self.bind(eqn, invals)
        return outs, [tainted] * len(outs)

    def bind(self, eqn, invals) -> list:
        """The outputs (a list) of a primitive that is neither a GEMM nor entered:
        bound natively (a subclass may post-process them)."""
        prim = eqn.primitive
        outs = prim.bind(*invals, **prim.get_bind_params(eqn.params))
        return list(outs) if prim.multiple_results else [outs]

    def _eval_while(self, eqn, invals, intaint, key, scope):
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

    def _eval_scan(self, eqn, invals, intaint, key, scope):
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
