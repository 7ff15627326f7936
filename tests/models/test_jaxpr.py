"""The jaxpr walker: GEMMs reach the hook once per execution, in order, through nested
calls, loops and branches; stored outputs are reused exactly when nothing upstream
changed; under tracing a GEMM inside a loop is refused."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import GEMM_PRIMITIVES, JaxprEvaluator, is_gemm


class Recorder(JaxprEvaluator):
    """Binds GEMMs natively and records (key, operand shapes) of each execution."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def gemm(self, eqn, invals, key, scope, tainted):
        self.calls.append((key, tuple(np.shape(x) for x in invals), tainted))
        return eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))


def f(x, w):
    y = jax.jit(lambda a, b: a @ b)(x, w)               # 1 GEMM inside a pjit

    def body(c, _):
        return jnp.tanh(c @ w), None                    # 3 GEMMs in a scan
    y, _ = jax.lax.scan(body, y, None, length=3)
    y = jax.lax.cond(y.sum() > 0, lambda v: v @ w, lambda v: -v, y)   # 0 or 1 GEMM
    return y + jnp.arange(4, dtype=jnp.int32) @ jnp.ones((4, 4), jnp.int32)  # integer dot: no GEMM


X = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
W = np.linspace(-0.5, 0.7, 16, dtype=np.float32).reshape(4, 4)


def test_gemms_reach_the_hook_in_execution_order():
    closed = jax.make_jaxpr(f)(X, W)
    r = Recorder()
    outs, taints = r.run(closed, [X, W])
    np.testing.assert_array_equal(outs[0], f(X, W))
    assert taints == [False]
    branch = bool((np.tanh(np.tanh(np.tanh((X @ W) @ W) @ W) @ W)).sum() > 0)
    assert len(r.calls) == 4 + branch
    keys = [k for k, _, _ in r.calls]
    assert len(set(keys)) == len(keys)
    assert [k for k in keys if "s" in k] == sorted(k for k in keys if "s" in k)   # scan steps in order
    assert [t for k in keys if "s" in k for t in [k[k.index("s") + 1]]] == [0, 1, 2]
    assert all(shapes == ((3, 4), (4, 4)) for _, shapes, _ in r.calls)
    assert GEMM_PRIMITIVES == ("dot_general", "conv_general_dilated")


def test_is_gemm_only_for_floating_operands():
    eqns = jax.make_jaxpr(lambda a, b, i: (a @ b, i @ i))(X, W, np.ones((2, 2), np.int32)).jaxpr.eqns
    dots = [e for e in eqns if e.primitive.name == "dot_general"]
    assert [is_gemm(e) for e in dots] == [True, False]


def test_golden_outputs_are_reused_until_something_changes():
    closed = jax.make_jaxpr(f)(X, W)
    golden = Recorder(record=True)
    ref, _ = golden.run(closed, [X, W])
    again = Recorder(golden=golden.cache)
    out, taints = again.run(closed, [X, W])
    assert again.eqns == 0 and again.calls == [] and taints == [False]
    np.testing.assert_array_equal(out[0], ref[0])
    # a dirty GEMM is recomputed; bitwise equal to the stored output, it stops there (masked)
    first = golden.calls[0][0]
    dirty = Recorder(golden=golden.cache, dirty=[first])
    out, taints = dirty.run(closed, [X, W])
    assert [k for k, _, _ in dirty.calls] == [first] and taints == [False]
    np.testing.assert_array_equal(out[0], ref[0])
    # changed, it taints everything downstream: every later GEMM re-runs on tainted operands
    faulty = Perturber(first, golden=golden.cache, dirty=[first])
    out, taints = faulty.run(closed, [X, W])
    assert [k for k, _, _ in faulty.calls] == [k for k, _, _ in golden.calls]
    assert all(t for _, _, t in faulty.calls[1:]) and taints == [True]
    assert not np.array_equal(out[0], ref[0])


class Perturber(Recorder):
    """Adds 1 to the output of the GEMM execution at ``at``."""

    def __init__(self, at, **kw):
        super().__init__(**kw)
        self.at = at

    def gemm(self, eqn, invals, key, scope, tainted):
        y = super().gemm(eqn, invals, key, scope, tainted)
        return y + 1 if key == self.at else y


def test_under_tracing_a_gemm_inside_a_loop_is_refused():
    def g(x, w):
        return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=2)[0]

    closed = jax.make_jaxpr(g)(X, W)
    with pytest.raises(NotImplementedError, match="'scan'"):
        jax.jit(lambda x, w: Recorder(concrete=False).run(closed, [x, w])[0])(X, W)

    def h(x):
        return jax.lax.scan(lambda c, _: (jnp.sin(c), None), x, None, length=2)[0]

    closed = jax.make_jaxpr(h)(X)
    out = jax.jit(lambda x: Recorder(concrete=False).run(closed, [x])[0])(X)
    np.testing.assert_array_equal(out[0], h(X))
