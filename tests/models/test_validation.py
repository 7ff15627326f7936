"""Bad configs and arguments raise TypeError / ValueError worded "X must be Y, not Z"."""
import numpy as np
import pytest

from models import (Accelerator, OutputBitFlip, ReplaceGemmOutput, ReplaceTile, accelerated, get_model,
                    load_digits)

f = lambda x, w: x @ w  # noqa: E731


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(profile=3), TypeError, "profile must be a str or DatapathProfile, not int"),
    (dict(profile="npu9000"), ValueError, "profile must be one of .*, not 'npu9000'"),
    (dict(input_format=16), TypeError, "input_format must be a str, not int"),
    (dict(input_format="fp8"), ValueError, "input_format must be one of .*, not 'fp8'"),
    (dict(accumulator="fp64"), ValueError, "accumulator must be one of .*, not 'fp64'"),
    (dict(profile="turing", input_format="bf16"), ValueError, "input_format must be one of \\['fp16'\\] for profile"),
    (dict(profile="systolic_fma", accumulator="fp16"), ValueError, "accumulator must be one of \\['fp32'\\]"),
    (dict(saturate="yes"), TypeError, "saturate must be a bool or None, not str"),
    (dict(split_k=1.5), TypeError, "split_k must be an int, not float"),
    (dict(split_k=0), ValueError, "split_k must be >= 1, not 0"),
])
def test_accelerator_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Accelerator(**kwargs)


def test_accelerator_is_frozen_and_hashable():
    acc = Accelerator()
    with pytest.raises(AttributeError):
        acc.input_format = "bf16"
    assert hash(acc) == hash(Accelerator("hopper", "fp16", "fp32"))


def test_fault_validation():
    with pytest.raises(ValueError, match="gemm must be >= 0, not -1"):
        OutputBitFlip(gemm=-1, row=0, col=0, bit=0)
    with pytest.raises(TypeError, match="row must be an int, not float"):
        OutputBitFlip(gemm=0, row=1.0, col=0, bit=0)
    with pytest.raises(TypeError, match="fn must be callable, not int"):
        ReplaceGemmOutput(gemm=0, fn=3)
    with pytest.raises(TypeError, match="rows must be a \\(start, stop\\) tuple of ints, not \\[0, 1\\]"):
        ReplaceTile(gemm=0, rows=[0, 1], cols=(0, 1), fn=lambda a, b, d: d)
    with pytest.raises(ValueError, match="rows must satisfy 0 <= start < stop, not \\(3, 1\\)"):
        ReplaceTile(gemm=0, rows=(3, 1), cols=(0, 1), fn=lambda a, b, d: d)


def test_bridge_argument_validation():
    x, w = np.ones((2, 3), np.float32), np.ones((3, 2), np.float32)
    with pytest.raises(TypeError, match="fn must be callable, not int"):
        accelerated(3, Accelerator())
    with pytest.raises(TypeError, match="accelerator must be an Accelerator, not str"):
        accelerated(f, "hopper")
    with pytest.raises(TypeError, match="faults must hold .* values, not int"):
        accelerated(f, Accelerator(), faults=[3])
    with pytest.raises(ValueError, match="row must be in \\[0, 2\\), not 5"):
        accelerated(f, Accelerator(), faults=[OutputBitFlip(0, row=5, col=0, bit=0)])(x, w)
    with pytest.raises(ValueError, match="fn must return shape \\(1, 2, 2\\), not \\(2, 2\\)"):
        accelerated(f, Accelerator(), faults=[ReplaceGemmOutput(0, fn=lambda c: c.d[0])])(x, w)
    g = accelerated(f, Accelerator()).trace(x, w)
    with pytest.raises(ValueError, match="gemm must be in \\[0, 1\\), not 1"):
        g.inject(OutputBitFlip(1, 0, 0, 0))


def test_model_and_data_validation():
    with pytest.raises(ValueError, match="model must be one of .*, not 'resnet'"):
        get_model("resnet")
    with pytest.raises(TypeError, match="model must be a str, not int"):
        get_model(1)
    with pytest.raises(ValueError, match="split must be 'train' or 'test', not 'val'"):
        load_digits("val")
