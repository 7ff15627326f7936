"""Accelerator(split_k=s) on a GEMM whose K is not a multiple of s raises, naming K and
split_k, instead of silently running unsplit."""
import numpy as np
import pytest

import simulator
from models import Accelerator


def test_split_k_must_divide_k():
    acc = Accelerator("hopper", "fp16", split_k=3)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1, 4, 10)).astype(np.float16)
    b = rng.standard_normal((1, 10, 5)).astype(np.float16)
    with pytest.raises(ValueError, match=r"K must be a multiple of split_k=3, not 10"):
        acc.gemm(a, b)
    a, b = a[:, :, :9], b[:, :9]
    d = acc.gemm(a, b)
    ref = simulator.matmul(a[0], b[0], np.zeros((4, 5), np.float32), profile="hopper", split_k=3)
    np.testing.assert_array_equal(d[0].view(np.uint32), ref.view(np.uint32))
