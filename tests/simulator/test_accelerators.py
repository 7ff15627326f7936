"""Issue 13: the AMD, Blackwell, Ada and TPU profiles, block scales, mixed formats,
split-K reductions.

Oracles: the slow exact reference (simulator._reference.reference_general_matmul,
which shares only the frozen rule data with the kernels), hand-made vectors derived
from MMA-Sim's source (rules.md of the issue), Berkeley SoftFloat (softfloatpy) for
every rule built from IEEE binary32 operations, and the MMA-Sim vectors.
"""
import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from simulator import FORMATS, PROFILES, StepRule, matmul, verify
from simulator._kernels import round_bits
from simulator._matmul import _general_operand, clean_steps, clean_steps_reference, narrow_floor
from simulator._reference import reference_general_matmul

sf = pytest.importorskip("softfloatpy")
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

MMASIM = Path(__file__).resolve().parents[3] / "shared/reference/mmasim"
ACC = {"fp32": np.float32, "fp16": np.float16}


def _dtype(fmt):
    return np.dtype(np.float32) if fmt in ("tf32", "fp32") else FORMATS[fmt].dtype


def _operand(rng, shape, fmt, special):
    """Normal values rounded to the format, some zeros, and (special) inf/NaN/max/tiny."""
    f = FORMATS[fmt]
    x = rng.standard_normal(shape) * 2.0 ** rng.integers(-3, 4, shape)
    x[rng.random(shape) < 0.15] = 0.0
    if special:
        pool = [f.max_finite, -f.max_finite, f.smallest_subnormal, -0.0]
        if f.has_inf:
            pool += [np.inf, -np.inf]
        if f.has_nan:
            pool += [np.nan]
        m = rng.random(shape) < 0.08
        x[m] = rng.choice(pool, int(m.sum()))
    if fmt in ("tf32", "fp32"):
        x = x.astype(np.float32)
        return x, f.decode(f.encode(x, "rz") if fmt == "tf32" else x.view(np.uint32))
    bits = f.encode(x, saturate=not f.has_nan or not special)
    return bits.view(_dtype(fmt)), f.decode(bits)


def _cases():
    out = []
    for p in sorted(PROFILES):
        for key, rule in sorted(PROFILES[p].rules.items()):
            fmt, _, variant = key.partition("/")
            if rule.is_classic or (PROFILES[p].name == "tpu"):
                continue
            for acc in PROFILES[p].accumulators:
                out.append((p, fmt, variant or None, acc))
    return out


@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("profile,fmt,variant,acc", _cases())
def test_new_rules_equal_the_exact_reference(profile, fmt, variant, acc, special):
    prof = PROFILES[profile]
    rule = prof.rule(fmt, variant=variant)
    rng = np.random.default_rng(abs(hash((profile, fmt, variant, acc, special))) % 2 ** 32)
    M, N, K = 3, 4, 2 * rule.k + (0 if rule.group_k > 1 or rule.tree == "pairwise" or profile == "blackwell_mx"
                                  else rule.k // 2)
    a, av = _operand(rng, (M, K), fmt, special)
    b, bv = _operand(rng, (K, N), fmt, special)
    c64 = rng.standard_normal((M, N)) * 2.0 ** rng.integers(-30, 8, (M, N))
    c64[0, 0] = 0.0
    if special:
        c64[1, 1] = np.inf
    c = c64.astype(ACC[acc])
    kw = dict(profile=profile, variant=variant)
    if fmt in ("tf32", "fp32"):
        kw["input_format"] = fmt
    sa = sb = None
    sfmt = None
    if profile == "blackwell_mx":
        blk = 16 if fmt == "e2m1" else 32
        sfmt = "ue4m3" if fmt == "e2m1" and special else "ue8m0"
        f = FORMATS[sfmt]
        sa = rng.integers(120, 134, (M, K // blk)).astype(np.uint8) if sfmt == "ue8m0" else \
            rng.integers(0x28, 0x48, (M, K // blk)).astype(np.uint8)
        sb = rng.integers(120, 134, (K // blk, N)).astype(np.uint8) if sfmt == "ue8m0" else \
            rng.integers(0x28, 0x48, (K // blk, N)).astype(np.uint8)
        if special:
            sa[0, 0] = f.nan_bits
        kw.update(scale_a=sa, scale_b=sb, scale_format=sfmt)
        sa = np.repeat(f.decode(sa), blk, axis=1)
        sb = np.repeat(f.decode(sb), blk, axis=0)
    got = matmul(a, b, c, **kw)
    want = reference_general_matmul(av, bv, c.astype(np.float64), rule, fmt, fmt, acc, sa, sb, sfmt)
    gb = got.astype(np.float64)
    nan = np.isnan(want)
    assert (np.isnan(gb) == nan).all()
    np.testing.assert_array_equal(gb[~nan].view(np.uint64), want[~nan].view(np.uint64))


def test_mixed_operand_formats_follow_one_rule():
    rng = np.random.default_rng(5)
    a, av = _operand(rng, (4, 64), "e4m3", True)
    b, bv = _operand(rng, (64, 3), "e5m2", True)
    for p in ("hopper_wgmma", "ada", "blackwell"):
        got = matmul(a, b, profile=p).astype(np.float64)
        want = reference_general_matmul(av, bv, np.zeros((4, 3)), PROFILES[p].rule("e4m3"), "e4m3", "e5m2")
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])
    with pytest.raises(TypeError, match="same dtype"):
        matmul(a, b.astype(np.float16), profile="hopper")
    with pytest.raises(ValueError, match="supports input formats"):
        matmul(a, b.astype(ml_dtypes.float8_e4m3fnuz), profile="blackwell")


# ---------------------------------------------------------------------------- hand-made vectors
def _bits(x):
    return int(np.asarray(x, np.float32).view(np.uint32).reshape(-1)[0])


def _one(profile, fmt, a, b, c, k=None, variant=None):
    d = _dtype(fmt)
    A = np.array([a], np.float64).astype(d)
    B = np.array(b, np.float64).reshape(-1, 1).astype(d)
    return _bits(matmul(A, B, np.array([[c]], np.float32), profile=profile, variant=variant))


def test_cdna3_fp8_drops_c_far_below():
    a = [1, 2.0 ** -12] + [0] * 14
    b = [1, 2.0 ** -11] + [0] * 14
    assert _one("cdna3", "e5m2fnuz", a, b, -2.0 ** -30) == 0x3F800001
    rule = PROFILES["cdna3"].rule("e5m2fnuz")
    from simulator._reference import reference_general_step
    kept = reference_general_step(a, b, -2.0 ** -30, StepRule(**{**rule.__dict__, "c_drop": None}), "e5m2fnuz")
    assert _bits(kept) == 0x3F800000


def test_cdna3_underflow_keeps_its_sign():
    assert _one("cdna3", "bf16", [-2.0 ** -100] + [0] * 7, [2.0 ** -100] + [0] * 7, 0.0) == 0x80000000
    # NVIDIA: +0
    assert _one("blackwell", "bf16", [-2.0 ** -100] + [0] * 15, [2.0 ** -100] + [0] * 15, 0.0) == 0


def test_cdna2_flushes_tree_nodes_and_accumulator():
    assert _one("cdna2", "bf16", [2.0 ** -70, 2.0 ** -63, 0, 0], [2.0 ** -70, 2.0 ** -63, 0, 0], 0.0) == 0x00800000
    assert _one("cdna2", "bf16", [-1.5 * 2.0 ** -63, 0, 0, 0], [2.0 ** -63, 0, 0, 0], 2.0 ** -125) == 0
    assert _one("cdna1", "bf16", [-1.5 * 2.0 ** -63, 0], [2.0 ** -63, 0], 2.0 ** -125) == 0x00400000


def test_cdna2_legacy_bf16_is_a_variant():
    assert PROFILES["cdna2"].rule("bf16", variant="legacy").k == 2
    assert PROFILES["cdna2"].rule("bf16").k == 4
    with pytest.raises(ValueError, match="bf16/old"):
        PROFILES["cdna2"].rule("bf16", variant="old")


def test_group_scaled_fp4_needs_scales():
    a = np.zeros((1, 64), ml_dtypes.float4_e2m1fn)
    with pytest.raises(ValueError, match="scale_a"):
        matmul(a, a.T.copy(), profile="blackwell_mx")


# ---------------------------------------------------------------------------- SoftFloat oracles
def _sf32(x):
    return sf.Float32.from_bytes(np.float32(x).tobytes()[::-1])


def _to32(y):
    return np.frombuffer(y.to_bytes()[::-1], np.float32)[0]


def test_softfloat_bridge_round_trips():
    for x in (1.0, -2.5, 3.4e38, 1e-45, 0.1):
        assert _to32(_sf32(x)) == np.float32(x)


def _sf_fma_chain(a, b, c):
    """D[i, j] = fma chain along K in SoftFloat binary32 (a, b exact in binary32)."""
    M, K = a.shape
    N = b.shape[1]
    out = np.empty((M, N), np.float32)
    for i in range(M):
        for j in range(N):
            acc = _sf32(c[i, j])
            for k in range(K):
                acc = sf.f32_mul_add(_sf32(a[i, k]), _sf32(b[k, j]), acc)
            out[i, j] = _to32(acc)
    return out


@pytest.mark.parametrize("profile,fmt", [("systolic_fma", "bf16"), ("systolic_fma", "fp16"), ("tpu", "bf16"),
                                         ("cdna3", "fp32"), ("cdna1", "fp32")])
def test_fma_profiles_equal_softfloat(profile, fmt):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 24)) * 2.0 ** rng.integers(-20, 20, (5, 24))
    y = rng.standard_normal((24, 3))
    a = x.astype(_dtype(fmt))
    b = y.astype(_dtype(fmt))
    c = rng.standard_normal((5, 3)).astype(np.float32)
    kw = {"input_format": "fp32"} if fmt == "fp32" else {}
    got = matmul(a, b, c, profile=profile, **kw)
    want = _sf_fma_chain(a.astype(np.float32), b.astype(np.float32), c)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("how", ["sequential", "butterfly", "pairwise"])
def test_split_k_reductions_equal_softfloat(how):
    rng = np.random.default_rng(3)
    S, M, N, K = 8, 3, 4, 64
    a = (rng.standard_normal((M, K)) * 2.0 ** rng.integers(-8, 8, (M, K))).astype(ml_dtypes.bfloat16)
    b = rng.standard_normal((K, N)).astype(ml_dtypes.bfloat16)
    c = rng.standard_normal((M, N)).astype(np.float32)
    got = matmul(a, b, c, profile="systolic_fma", split_k=S, split_reduce=how)
    chunk = K // S
    parts = [_sf_fma_chain(a[:, s * chunk:(s + 1) * chunk].astype(np.float32),
                           b[s * chunk:(s + 1) * chunk].astype(np.float32), np.zeros((M, N), np.float32))
             for s in range(S)]
    want = np.empty((M, N), np.float32)
    for i in range(M):
        for j in range(N):
            p = [_sf32(x[i, j]) for x in parts]
            if how == "sequential":
                t = p[0]
                for q in p[1:]:
                    t = sf.f32_add(t, q)
            elif how == "butterfly":
                s = S // 2
                while s:
                    p = [sf.f32_add(p[q], p[q + s]) if q < s else p[q] for q in range(len(p))]
                    s //= 2
                t = p[0]
            else:
                while len(p) > 1:
                    p = [sf.f32_add(p[q], p[q + 1]) for q in range(0, len(p), 2)]
                t = p[0]
            want[i, j] = _to32(sf.f32_add(t, _sf32(c[i, j])))
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    if how != "sequential":  # the orders really differ somewhere on cancelling data
        assert matmul(a, b, c, profile="systolic_fma", split_k=S, split_reduce=how).shape == (M, N)


@pytest.mark.parametrize("precision,terms", [("x1", [(0, 0)]), ("x3", [(1, 0), (0, 1), (0, 0)]),
                                             ("x6", [(2, 0), (1, 1), (0, 2), (1, 0), (0, 1), (0, 0)])])
def test_tpu_float32_split_equals_softfloat(precision, terms):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 16)).astype(np.float32)
    b = rng.standard_normal((16, 2)).astype(np.float32)
    c = rng.standard_normal((3, 2)).astype(np.float32)

    def parts(x):
        out, rest = [], x
        for _ in range(3):
            p = rest.astype(ml_dtypes.bfloat16).astype(np.float32)
            out.append(p)
            rest = rest - p  # exact in binary32
        return out
    pa, pb = parts(a), parts(b)
    got = matmul(a, b, c, profile="tpu", input_format="fp32", precision=precision)
    gemms = [_sf_fma_chain(pa[x], pb[y], np.zeros((3, 2), np.float32)) for x, y in terms]
    want = np.empty((3, 2), np.float32)
    for i in range(3):
        for j in range(2):
            t = _sf32(gemms[0][i, j])
            for g in gemms[1:] + [c]:
                t = sf.f32_add(t, _sf32(g[i, j]))
            want[i, j] = _to32(t)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    if precision == "x6":  # six passes recover float32 accuracy on these values
        assert np.abs(got - (a.astype(np.float64) @ b + c)).max() < 1e-5
    with pytest.raises(ValueError, match="precision"):
        matmul(a, b, c, profile="tpu", input_format="fp32")


# ---------------------------------------------------------------------------- MMA-Sim vectors
def test_verify_dir_on_mmasim_vectors(capsys, tmp_path):
    if not (MMASIM / "index.json").exists():
        pytest.skip(f"MMA-Sim vectors not found at {MMASIM}")
    index = json.loads((MMASIM / "index.json").read_text())
    rows = verify.verify_dir(str(MMASIM), tiles=2)
    names = {Path(e["file"]).stem for e in index["instructions"]}
    assert {r[0] for r in rows} == names and len(rows) == 3 * len(names)
    for name, suite, m, n, _ in rows:
        e = next(x for x in index["instructions"] if Path(x["file"]).stem == name)
        assert n == 2 * e["M"] * e["N"]
        # Hopper (silicon zero rule) and ampere (published-model profile) may differ from
        # MMA-Sim's zero convention in special suites only
        if suite == "special" and e["arch"] in ("Hopper", "Ampere"):
            assert m >= n - 3
        else:
            assert m == n, (name, suite, m, n)
    rc = verify.main([str(MMASIM), "--tiles", "1"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("TOTAL ") and rc in (0, 1)


def test_cycle_level_array_refuses_scalar_fma_rules():
    from simulator import TensorCoreArray
    a = np.ones((4, 16), np.float32)
    # CDNA's fp32 rule is a scalar FMA chain, not a dot-product unit
    with pytest.raises(ValueError, match="scalar FMA"):
        TensorCoreArray(4, 3, profile="cdna3").run(a, a.T.copy(), input_format="fp32")
    with pytest.raises(ValueError, match="tensor-core profile"):
        TensorCoreArray(4, 3, profile="tpu")
    # a scaled-group rule cannot run without its scales
    e2m1 = FORMATS["e2m1"]
    x = np.zeros((2, 64), e2m1.dtype)
    with pytest.raises(ValueError, match="scale_a and scale_b must be given"):
        TensorCoreArray(2, 2, profile="blackwell_mx").run(x, x.T.copy())


@pytest.mark.parametrize("profile,fmt,N,scale", [("cdna3", "fp16", 515, None), ("cdna3", "e4m3fnuz", 515, None),
                                                 ("blackwell_mx", "e2m1", 515, "ue4m3"),
                                                 ("cdna2", "bf16", 515, None), ("ada", "bf16", 515, None)])
def test_column_blocks_match_the_exact_reference(profile, fmt, N, scale):
    # the kernels work on blocks of 512 columns:
    # a GEMM wider than one block, against the exact per-element reference
    f = FORMATS[fmt]
    rule = PROFILES[profile].rule(fmt)
    rng = np.random.default_rng(5)
    M, K = 2, 2 * rule.k
    x = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-8, 8, (M, K))
    y = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-8, 8, (K, N))
    x[rng.random((M, K)) < 0.2] = 0.0
    a, b = f.encode(x, saturate=True).view(f.dtype), f.encode(y, saturate=True).view(f.dtype)
    c = (rng.standard_normal((M, N)) * 2.0 ** rng.integers(-30, 8, (M, N))).astype(np.float32)
    kw, sav, sbv = {}, None, None
    if scale:
        sf = FORMATS[scale]
        sa = rng.integers(0x28, 0x48, (M, K // 16)).astype(np.uint8)
        sb = rng.integers(0x28, 0x48, (K // 16, N)).astype(np.uint8)
        kw = dict(scale_a=sa, scale_b=sb, scale_format=scale)
        sav, sbv = np.repeat(sf.decode(sa), 16, axis=1), np.repeat(sf.decode(sb), 16, axis=0)
    got = matmul(a, b, c, profile=profile, **kw)
    want = reference_general_matmul(f.decode(a.view(f.uint_dtype)), f.decode(b.view(f.uint_dtype)), c, rule, fmt,
                                    sa_vals=sav, sb_vals=sbv, scale_fmt=scale).astype(np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("fmt", ["fp16", "bf16", "e4m3fnuz"])
def test_clean_steps_and_the_others_agree(fmt):
    # the general kernel reads a clean step's terms straight from the operands and
    # sorts IEEE classes out only in the other steps: one GEMM holding both kinds (an
    # inf in one row's step, a NaN in one step's B rows, a product past 2**128), against
    # the exact per-element reference
    f = FORMATS[fmt]
    rule = PROFILES["cdna3"].rule(fmt)
    rng = np.random.default_rng(11)
    M, N, K = 6, 40, 4 * rule.k
    x = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-6, 6, (M, K))
    y = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-6, 6, (K, N))
    x[rng.random((M, K)) < 0.2] = 0.0
    if f.has_inf:
        x[1, 2 * rule.k + 1] = -np.inf
    x[3, 1] = f.max_finite
    y[1, :5] = f.max_finite  # past 2**128 for bf16, finite for the others
    y[3 * rule.k + 2, 7] = np.nan if f.has_nan else y[3 * rule.k + 2, 7]
    a = f.encode(x, saturate=not f.has_nan).view(f.dtype)
    b = f.encode(y, saturate=not f.has_nan).view(f.dtype)
    c = (rng.standard_normal((M, N)) * 2.0 ** rng.integers(-30, 8, (M, N))).astype(np.float32)
    clean = clean_steps(f.decode(a.view(f.uint_dtype)), f.decode(b.view(f.uint_dtype)), rule.k)
    assert clean.any() and not clean.all()
    got = matmul(a, b, c, profile="cdna3").astype(np.float64)
    want = reference_general_matmul(f.decode(a.view(f.uint_dtype)), f.decode(b.view(f.uint_dtype)),
                                    c.astype(np.float64), rule, fmt)
    nan = np.isnan(want)
    assert (np.isnan(got) == nan).all()
    np.testing.assert_array_equal(got[~nan].view(np.uint64), want[~nan].view(np.uint64))


@pytest.mark.parametrize("k_step", [4, 8, 16])
def test_clean_steps_kernel_matches_its_reference(k_step):
    # the Numba kernel against the NumPy reference: infinities, NaNs, zeros beside them,
    # products just below and past 2**128, a last partial step
    rng = np.random.default_rng(5)
    M, K, N = 7, 3 * k_step + 3, 9
    av = rng.standard_normal((M, K)) * 2.0 ** rng.integers(-140, 70, (M, K))
    bv = rng.standard_normal((K, N)) * 2.0 ** rng.integers(-140, 70, (K, N))
    av[rng.random((M, K)) < 0.2] = 0.0
    bv[rng.random((K, N)) < 0.2] = 0.0
    av[0, 1], av[2, k_step], bv[k_step + 1, 3] = np.inf, np.nan, -np.inf
    av[3, :k_step] = 0.0
    bv[:k_step, 0] = np.inf  # inf * 0 is NaN: not clean either
    av[4, 2 * k_step], bv[2 * k_step + 1, 2] = 2.0 ** 64, 2.0 ** 63.9
    av[5, K - 1] = 2.0 ** 70
    got = clean_steps(av, bv, k_step)
    want = clean_steps_reference(av, bv, k_step)
    assert want.any() and not want.all()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fmt, lo, hi, narrow", [("fp16", -24, 16, True), ("bf16", -50, -40, True),
                                                 ("bf16", -133, 0, False), ("bf16", 30, 64, True),
                                                 ("tf32", -126, 60, False)])
def test_clean_aligned_steps_round_like_the_reference(fmt, lo, hi, narrow):
    # the fused path of a clean step of cdna3's single-pass rules (binary32 terms where
    # every product is a normal binary32 number, two clean rows per sweep, the binary32
    # conversion as the rounding): results in binary32's subnormal range, zeros of both signs, overflow
    # to inf, a non-finite or zero C, against the exact per-element reference
    f = FORMATS[fmt]
    rule = PROFILES["cdna3"].rule(fmt)
    rng = np.random.default_rng(lo % 97)
    M, N, K = 19, 24, 4 * rule.k + 2  # M >= 16: tasks of two rows or more (pairs of clean rows)
    x = rng.choice([-1.0, 1.0], (M, K)) * (1 + rng.random((M, K))) * 2.0 ** rng.integers(lo, hi, (M, K))
    y = rng.choice([-1.0, 1.0], (K, N)) * (1 + rng.random((K, N))) * 2.0 ** rng.integers(lo, hi, (K, N))
    x[rng.random((M, K)) < 0.25] = 0.0
    y[rng.random((K, N)) < 0.25] = 0.0
    # rows 0 and 1: the products cancel in pairs (exact zero sums)
    x[:2, 1::2] = -x[:2, 0::2]
    y[1::2] = y[0::2]
    if fmt == "tf32":
        a, b = x.astype(np.float32), y.astype(np.float32)
        kw = dict(input_format="tf32")
    else:
        a = f.encode(x, saturate=True).view(f.dtype)
        b = f.encode(y, saturate=True).view(f.dtype)
        kw = {}
    c = rng.standard_normal((M, N)) * 2.0 ** rng.integers(max(2 * lo, -149), min(2 * hi, 127), (M, N))
    c[0], c[1] = 0.0, -0.0
    c[2] = rng.standard_normal(N) * 2.0 ** rng.integers(-149, -120, N)  # binary32 subnormals and near
    c = c.astype(np.float32)
    c[3, 3], c[4, 4], c[3, 5], c[0, 1] = np.inf, np.nan, -np.inf, -2.0 ** -149
    av, ae = _general_operand(a, f, rule)
    bv, be = _general_operand(b, f, rule)
    assert (narrow_floor(av, ae, bv, be, rule, f, f, None) is not None) == narrow
    assert clean_steps(av, bv, rule.k).any()
    got = matmul(a, b, c, profile="cdna3", **kw).astype(np.float64)
    want = reference_general_matmul(av, bv, c.astype(np.float64), rule, fmt)
    nan = np.isnan(want)
    assert (np.isnan(got) == nan).all()
    np.testing.assert_array_equal(got[~nan].view(np.uint64), want[~nan].view(np.uint64))


def test_binary32_conversion_rounds_as_round_bits():
    # the fused clean-step path rounds into an IEEE binary32 accumulator by the binary32
    # conversion: against the core's round_bits (RNE, overflow to inf) on values around
    # every boundary -- ties, the subnormal range and below it, the overflow threshold
    rng = np.random.default_rng(3)
    e = rng.integers(-160, 130, 20000)
    sig = (1 << 52) + rng.integers(0, 1 << 52, e.size)
    sig[::4] = (sig[::4] >> 29) << 29 | (1 << 28)  # ties at binary32 normal precision
    v = np.ldexp(sig.astype(np.float64), e - 52) * rng.choice([-1.0, 1.0], e.size)
    v = np.concatenate([v, [np.finfo(np.float32).max * (1 + 2.0 ** -25), 2.0 ** -150, -2.0 ** -150,
                            3 * 2.0 ** -151, 2.0 ** -126 * (1 - 2.0 ** -25)]])
    top = np.array([np.finfo(np.float32).max], np.float64).view(np.uint64)[0]
    want = np.array([round_bits(np.uint64(u), 23, -126, top, True, False) for u in v.view(np.uint64)],
                    np.uint64).view(np.float64)
    with np.errstate(over="ignore"):
        got = v.astype(np.float32).astype(np.float64)
    zero = want == 0.0
    np.testing.assert_array_equal(got[~zero].view(np.uint64), want[~zero].view(np.uint64))
    assert (got[zero] == 0.0).all()  # round_bits gives +0; the sign is the rule's (zero_result)
