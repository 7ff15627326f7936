"""Datapath profiles: catalogue entries, validation, immutability, lookup."""
import dataclasses
from types import MappingProxyType

import numpy as np
import pytest

import simulator
from simulator import C_MODES, FORMATS, PROFILES, DatapathProfile, StepRule, get_profile


# ---------------------------------------------------------------------------- catalogue
def test_catalogue_has_the_issue_profiles():
    assert {"hopper", "hopper_wgmma", "ampere", "turing", "volta", "systolic_fma"} <= set(PROFILES)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_catalogue_entry_is_valid(name):
    p = PROFILES[name]
    assert isinstance(p, DatapathProfile) and p.name == name
    assert isinstance(p.description, str) and p.description
    assert isinstance(p.rules, MappingProxyType) and len(p.rules) >= 1
    assert {k.split("/")[0] for k in p.rules} <= set(FORMATS) - {"ue8m0", "ue4m3"}
    assert "fp32" not in p.rules or p.rules["fp32"].frac_bits is None  # binary32 inputs: an IEEE fma
    assert all(isinstance(r, StepRule) for r in p.rules.values())
    assert "fp32" in p.accumulators and set(p.accumulators) <= {"fp32", "fp16"}
    if p.host_nan:
        assert p.name.startswith("cdna")  # MMA-Sim's AMD NaN bits are its host's
    else:
        assert np.isnan(np.array([p.nan_fp32], np.uint32).view(np.float32)[0])
        assert np.isnan(np.array([p.nan_fp16], np.uint16).view(np.float16)[0])
    assert get_profile(name) is p and get_profile(p) is p
    for fmt, rule in p.rules.items():
        assert p.rule(fmt) is rule
        assert rule.c_mode in C_MODES
        # a rebuilt rule validates and equals the catalogue's (the entry passed its own checks)
        assert StepRule(**dataclasses.asdict(rule)) == rule
    assert DatapathProfile(p.name, p.description, dict(p.rules), p.accumulators, p.nan_fp32, p.nan_fp16,
                           p.mx_block) == p
    # a unit with block-scaled instructions has rules that take E8M0 scales per mx_block K positions
    assert p.mx_block in (0, 32) and (p.mx_block == 0 or all(r.k % p.mx_block == 0 or p.mx_block % r.k == 0
                                                             for r in p.rules.values()))


@pytest.mark.parametrize("bad", [-1, 1.5, True, "32"])
def test_mx_block_must_be_a_nonnegative_int(bad):
    with pytest.raises(ValueError, match="mx_block"):
        DatapathProfile("x", "d", {"fp16": PROFILES["hopper"].rule("fp16")}, mx_block=bad)


def test_hopper_follows_the_published_h100_rule():
    """The H100 README's 16-bit rule: one fused step per instruction, 25 bits, RZ, NaN 0x7FFFFFFF."""
    p = PROFILES["hopper"]
    assert set(p.rules) == {"fp16", "bf16", "tf32", "e4m3", "e5m2"}
    assert set(p.accumulators) == {"fp32", "fp16"}  # f16f16 is part of hopper
    assert (p.nan_fp32, p.nan_fp16) == (0x7FFFFFFF, 0x7FFF)
    for fmt, k in (("fp16", 16), ("bf16", 16), ("tf32", 8)):
        r = p.rule(fmt)
        assert (r.k, r.frac_bits, r.c_mode, r.rounding, r.result_man_bits, r.operand_rounding) == \
            (k, 25, "fused", "rz", 23, "rz")
    for fmt in ("e4m3", "e5m2"):
        assert p.rule(fmt).k == 32  # m16n8k32


def test_hopper_wgmma_is_hopper_but_for_fp8():
    h, w = PROFILES["hopper"], PROFILES["hopper_wgmma"]
    for fmt in ("fp16", "bf16", "tf32"):
        assert w.rule(fmt) == h.rule(fmt)
    for fmt in ("e4m3", "e5m2"):
        r = w.rule(fmt)
        assert (r.frac_bits, r.result_man_bits) == (13, 13)


def test_systolic_fma_is_an_ieee_binary32_fma():
    p = PROFILES["systolic_fma"]
    assert p.accumulators == ("fp32",)
    for fmt in ("fp16", "bf16", "e4m3", "e5m2"):
        r = p.rule(fmt)
        assert (r.k, r.frac_bits, r.rounding, r.result_man_bits) == (1, None, "rne", 23)


def test_older_tensor_cores_take_fp16():
    for name, k in (("ampere", 8), ("turing", 8), ("volta", 4)):
        assert PROFILES[name].rule("fp16").k == k


# ---------------------------------------------------------------------------- StepRule validation
@pytest.mark.parametrize("field,value", [
    ("k", 0), ("k", 257), ("k", -4), ("k", 16.0), ("k", "16"), ("k", True), ("k", None),
    ("frac_bits", 0), ("frac_bits", 36), ("frac_bits", 25.0), ("frac_bits", "25"), ("frac_bits", True),
    ("c_mode", "before"), ("c_mode", None),
    ("rounding", "rd"), ("rounding", "RZ"), ("rounding", None),
    ("operand_rounding", "rd"), ("operand_rounding", 0),
    ("result_man_bits", 0), ("result_man_bits", 24), ("result_man_bits", 23.0), ("result_man_bits", True),
    ("passes", ()), ("passes", [0]), ("passes", (1,)), ("passes", (0, 2)), ("passes", (0, 1, 1)),
    ("passes", (0, 0.0)), ("passes", (True, False)), ("passes", (-1, 0)), ("passes", 0),
    ("overflow", "saturate"), ("overflow", None),
    ("tree", "serial"), ("zero_exp", 5), ("zero_exp", -126.0), ("sum_frac_bits", 0), ("c_frac_bits", 41),
    ("align_rounding", "rne"), ("merge_rounding", "up"), ("c_drop", -1), ("pass_merge", "tree"),
    ("product_overflow", "nan"), ("flush", {"inputs"}), ("flush", frozenset({"leaves"})),
    ("group_k", 3), ("group_k", 0), ("zero_result", "-0"),
])
def test_step_rule_rejects_bad_field(field, value):
    with pytest.raises((TypeError, ValueError), match=field):
        StepRule(**{"k": 16, field: value})


@pytest.mark.parametrize("kw,match", [
    (dict(k=4, tree="pairwise"), "pairwise"),                      # C must come after the tree
    (dict(k=3, tree="pairwise", c_mode="after"), "pairwise"),      # not a power of two
    (dict(k=16, flush=frozenset({"nodes"})), "nodes"),             # nodes belong to a tree
    (dict(k=16, passes=(0, 1), pass_merge="parallel"), "parallel"),  # needs aligned C
    (dict(k=16, passes=(0, 1), zero_exp=-126), "chain"),
    (dict(k=16, group_k=16, c_mode="after"), "group_k"),
    (dict(k=1, frac_bits=None, zero_exp=-126), "classic"),
])
def test_step_rule_rejects_inconsistent_issue13_fields(kw, match):
    with pytest.raises(ValueError, match=match):
        StepRule(**kw)


def test_issue13_profiles_hold_the_published_rules():
    p = PROFILES["cdna3"]
    r = p.rule("e4m3fnuz", "e5m2fnuz")
    assert (r.k, r.frac_bits, r.passes, r.pass_merge, r.c_mode, r.c_drop) == (16, 24, (0, 1), "parallel", "aligned", 25)
    assert p.host_nan and not PROFILES["hopper"].host_nan
    assert PROFILES["hopper"].rule("fp16").zero_exp is None  # H100 silicon, not MMA-Sim
    assert PROFILES["blackwell_mx"].rule("e2m1").group_k == 16
    assert PROFILES["ada"].rule("e4m3").k == 16 and PROFILES["blackwell"].rule("e4m3").frac_bits == 25
    assert PROFILES["rtx_blackwell"].rules == PROFILES["blackwell"].rules
    assert PROFILES["cdna1"].rule("bf16").k == 2 and PROFILES["cdna2"].rule("bf16/legacy" .split("/")[0],
                                                                          variant="legacy").k == 2
    for name in ("ada", "blackwell", "rtx_blackwell", "blackwell_mx", "cdna1", "cdna2", "cdna3", "tpu"):
        assert "MMA-Sim" in PROFILES[name].description or "assumed" in PROFILES[name].description


def test_step_rule_exact_step_must_be_k1():
    with pytest.raises(ValueError, match="k=1"):
        StepRule(4, frac_bits=None)
    assert StepRule(1, frac_bits=None).frac_bits is None


def test_step_rule_accepts_valid_corners():
    for kw in (dict(k=1), dict(k=256, frac_bits=26), dict(k=32, passes=(0, 0, 1, 1)),
               dict(k=6, passes=(0, 1, 2)), dict(k=16, frac_bits=1, result_man_bits=1, overflow="ieee",
                                                  rounding="rne", c_mode="after")):
        r = StepRule(**kw)
        for f, v in kw.items():
            assert getattr(r, f) == v


# ---------------------------------------------------------------------------- DatapathProfile validation
RULES = {"fp16": StepRule(16)}


@pytest.mark.parametrize("kwargs,field", [
    (dict(rules={"fp64": StepRule(16)}), "rules"),
    (dict(rules={"float16": StepRule(16)}), "rules"),
    (dict(rules={"fp16": 16}), "rules"),
    (dict(rules={"fp16": {"k": 16}}), "rules"),
    (dict(rules=16), "rules"),
    (dict(accumulators=("bf16",)), "accumulators"),
    (dict(accumulators=("fp32", "fp64")), "accumulators"),
    (dict(accumulators=()), "accumulators"),
    (dict(name=""), "name"),
    (dict(name=3), "name"),
    (dict(nan_fp32=0x3F800000), "nan_fp32"),   # 1.0, not a NaN
    (dict(nan_fp32=1 << 32), "nan_fp32"),      # does not fit 32 bits
    (dict(nan_fp16=0x3C00), "nan_fp16"),       # 1.0, not a NaN
    (dict(nan_fp16=0x17FFF), "nan_fp16"),
], ids=lambda v: "-".join(f"{k}={v[k]!r}" for k in v) if isinstance(v, dict) else None)
def test_datapath_profile_rejects_bad_field(kwargs, field):
    base = dict(name="x", description="test", rules=RULES)
    with pytest.raises((TypeError, ValueError), match=field):
        DatapathProfile(**{**base, **kwargs})


def test_profiles_are_frozen_and_their_rules_read_only():
    p = PROFILES["hopper"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.nan_fp32 = 0
    with pytest.raises(TypeError):
        p.rules["fp16"] = StepRule(4)
    r = p.rule("fp16")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.k = 4
    # a profile copies the mapping it was given
    rules = {"fp16": StepRule(8)}
    q = DatapathProfile("q", "test", rules)
    rules["fp16"] = StepRule(4)
    rules["bf16"] = StepRule(4)
    assert q.rule("fp16").k == 8 and set(q.rules) == {"fp16"}
    assert hash(q) == hash(DatapathProfile("q", "test", {"fp16": StepRule(8)}))


def test_get_profile_and_rule_errors():
    with pytest.raises(ValueError, match="profile must be one of"):
        get_profile("h100")
    with pytest.raises(ValueError, match="profile must be one of"):
        get_profile("Hopper")
    with pytest.raises(TypeError, match="profile must be a str or DatapathProfile"):
        get_profile(None)
    with pytest.raises(TypeError, match="profile must be a str or DatapathProfile"):
        get_profile(PROFILES["hopper"].rule("fp16"))
    with pytest.raises(ValueError, match="supports input formats"):
        PROFILES["volta"].rule("bf16")
    with pytest.raises(ValueError, match="supports input formats"):
        PROFILES["hopper"].rule("fp32")
    assert simulator.get_profile is get_profile
