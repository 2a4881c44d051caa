"""The packed small-batch product (fastrnn._kernels.packed) on its own: every edge of its tiling
(rows not a multiple of MR, columns not a multiple of the panel width, K across the KC blocks of
either dtype), C-order and transposed left operands, accumulate or overwrite, scratch large or
too small."""
import numpy as np
import pytest

from fastrnn._jit import VECTOR_BYTES
from fastrnn._kernels import packed

MR, KC = packed.MR, packed.KC_FLOAT64


def _sizes():
    width = packed.panel_width(4)
    kc32 = packed.KC_FLOAT32
    return [
        (1, 1, 1), (MR, KC, width), (MR + 1, KC + 1, width + 1),
        (2 * MR - 1, 2 * KC + 3, 3 * width - 5), (MR, kc32, width), (MR + 2, 3 * kc32 + 1, 9),
        (25, 512, 2048), (7, 33, 70), (64, 3, 130), (MR, 0, width),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,K,P", _sizes())
@pytest.mark.parametrize("a_transposed", [False, True])
def test_packed_product_matches_float64(M, K, P, dtype, a_transposed, rng):
    a = rng.standard_normal((K, M)).astype(dtype).T if a_transposed else \
        rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, P)).astype(dtype)
    truth = a.astype(np.float64) @ b.astype(np.float64)
    eps = np.finfo(dtype).eps
    kc = packed.block_depth(np.dtype(dtype).itemsize)
    # |error| <= (kc + K/kc) eps sum|a||b| (blocked summation), with room for FMA rounding
    bound = 2 * (kc + K / kc + 2) * eps * (np.abs(a).astype(np.float64) @ np.abs(b)) + 1e-300
    for scratch in (np.empty(0, dtype), np.empty(packed.scratch_size((K, P)), dtype)):
        panels = packed.pack_panels(b, packed.panel_width(a.itemsize), scratch)
        assert panels.shape[0] * panels.shape[2] >= P
        out = np.full((M, P), np.nan, dtype)
        packed.packed_gemm(a, panels, out, False)
        assert out.dtype == dtype
        assert np.all(np.abs(out - truth) <= bound)
        start = rng.standard_normal((M, P)).astype(dtype)
        acc = start.copy()
        packed.packed_gemm(a, panels, acc, True)
        assert np.all(np.abs(acc - (start + truth)) <= bound + 2 * eps * np.abs(start))


def test_panel_width_fills_the_vector_registers():
    assert packed.panel_width(4) * 4 % VECTOR_BYTES == 0
    assert packed.panel_width(8) * 8 % VECTOR_BYTES == 0
    assert packed.panel_width(4) <= 64 and packed.panel_width(8) <= 64  # scratch_size assumes it


def test_dot_chooses_blas_below_the_threshold_with_the_same_result(rng):
    a = rng.standard_normal((3, 4))
    b = rng.standard_normal((4, 5))
    assert packed.pack_for_product(3, b, np.empty(0)).shape[0] == 0
    np.testing.assert_allclose(packed.dot(a, b, np.empty(0)), a @ b, rtol=1e-14)
    big_a = rng.standard_normal((40, 300))
    big_b = rng.standard_normal((300, 70))
    assert packed.pack_for_product(40, big_b, np.empty(0)).shape[0] > 0
    np.testing.assert_allclose(packed.dot(big_a, big_b, np.empty(0)), big_a @ big_b, rtol=1e-12)
    np.testing.assert_allclose(packed.dot(big_b.T, big_a.T, np.empty(0)), big_b.T @ big_a.T,
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_affine_layers_on_the_packed_kernel_match_the_reference(dtype, rng):
    """Sizes above the kernel threshold (the small ones run NumPy's @ and are covered by the
    layer tests): temporal affine and affine, forward and backward, against float64."""
    from fastrnn import layers, reference, rnn_layers
    N, T, D, M = 6, 5, 70, 130
    assert packed.PACKED_MIN <= N * T * D * M and packed.PACKED_MIN <= N * D * T * M
    x = rng.standard_normal((N, T, D))
    w = rng.standard_normal((D, M))
    b = rng.standard_normal(M)
    dout = rng.standard_normal((N, T, M))
    x4 = rng.standard_normal((N * 5, 2, D // 2))  # affine flattens (2, D/2) to D
    dout4 = rng.standard_normal((N * 5, M * T))
    w4 = rng.standard_normal((D // 2 * 2, M * T))
    b4 = rng.standard_normal(M * T)
    tol = 1e-12 if dtype == np.float64 else 3e-6
    cast = [a.astype(dtype) for a in (x, w, b, dout, x4, w4, b4, dout4)]
    out, cache = rnn_layers.temporal_affine_forward(*cast[:3])
    grads = rnn_layers.temporal_affine_backward(cast[3], cache)
    ref_out, ref_cache = reference.temporal_affine_forward(x, w, b)
    ref_grads = reference.temporal_affine_backward(dout, ref_cache)
    out4, cache4 = layers.affine_forward(*cast[4:7])
    grads4 = layers.affine_backward(cast[7], cache4)
    ref_out4, ref_cache4 = reference.affine_forward(x4, w4, b4)
    ref_grads4 = reference.affine_backward(dout4, ref_cache4)
    results = (out, *grads, out4, *grads4)
    expected = (ref_out, *ref_grads, ref_out4, *ref_grads4)
    for got, want in zip(results, expected):
        assert got.dtype == dtype and got.shape == want.shape
        assert np.max(np.abs(got - want)) <= tol * np.max(np.abs(want))
