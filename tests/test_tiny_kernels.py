"""The tiny-layer kernels (fastrnn._kernels.recurrent.*_small): the layers switch to them below
SMALL_MAX multiply-adds per step, so they must compute what the large kernels compute, in every
dtype, on both sides of the threshold, and the switch must happen where it says."""
import numpy as np
import pytest

from fastrnn import reference, rnn_layers
from fastrnn._kernels import recurrent
from fastrnn._validate import usable_as_is
from fastrnn._workspace import scratch_buffer

# (N, T, D, H): tiny for both kinds, tiny for the RNN only, and large for both
SHAPES = [(2, 10, 3, 6), (1, 1, 1, 1), (2, 4, 2, 3), (3, 4, 2, 4), (3, 5, 4, 7), (5, 3, 2, 9), (2, 16, 8, 8), (4, 6, 9, 15),
          (3, 4, 20, 24)]


def _arrays(rng, kind, N, T, D, H, dtype):
    G = H if kind == "rnn" else 4 * H
    arrays = dict(x=rng.standard_normal((N, T, D)), h0=rng.standard_normal((N, H)),
                  Wx=rng.standard_normal((D, G)) / np.sqrt(D),
                  Wh=rng.standard_normal((H, G)) / np.sqrt(H), b=0.1 * rng.standard_normal(G),
                  dh=rng.standard_normal((N, T, H)), c0=rng.standard_normal((N, H)),
                  dc=rng.standard_normal((N, H)))
    return {name: a.astype(dtype) for name, a in arrays.items()}


def _both(kind, a):
    """(large kernels' results, tiny kernels' results): forward outputs then gradients."""
    N, T, D = a["x"].shape
    H, G = a["Wh"].shape
    scratch = scratch_buffer(a["x"].dtype, recurrent.scratch_size(N, T, D, H, G))
    if kind == "rnn":
        fwd = (a["x"], a["h0"], a["Wx"], a["Wh"], a["b"])
        large = recurrent.rnn_forward(*fwd, scratch)
        small = recurrent.rnn_forward_small(*fwd)
        bwd = (a["dh"], a["x"], large[1], a["Wx"], a["Wh"])
        return (*large, *recurrent.rnn_backward(*bwd, scratch)), \
            (*small, *recurrent.rnn_backward_small(*bwd))
    fwd = (a["x"], a["h0"], a["c0"], a["Wx"], a["Wh"], a["b"])
    large = recurrent.lstm_forward(*fwd, scratch)
    small = recurrent.lstm_forward_small(*fwd)
    bwd = (a["dh"], a["dc"], a["x"], *large[1:], a["Wx"], a["Wh"])
    return (*large, *recurrent.lstm_backward(*bwd, scratch)), \
        (*small, *recurrent.lstm_backward_small(*bwd))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_tiny_kernels_compute_what_the_large_ones_do(kind, shape, dtype, rng):
    """Every output and gradient, in the input dtype, against the large kernels and against
    the same computation in float64 (the tiny kernels sum in a different order, and the weight
    gradients in float64: no less accurate)."""
    a = _arrays(rng, kind, *shape, dtype)
    large, small = _both(kind, a)
    large64, _ = _both(kind, {name: v.astype(np.float64) for name, v in a.items()})
    assert len(large) == len(small)
    tol = 1e-13 if dtype == np.float64 else 2e-6
    for want, got, exact in zip(large, small, large64):
        assert got.dtype == dtype and got.shape == want.shape
        scale = np.max(np.abs(exact)) + 1e-30
        assert np.max(np.abs(got - want)) <= tol * scale
        if dtype == np.float32:
            error_small = np.max(np.abs(got - exact))
            error_large = np.max(np.abs(want - exact))
            assert error_small <= 2 * error_large + 4 * np.finfo(dtype).eps * scale


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_layers_switch_to_the_tiny_kernels_exactly_below_the_threshold(kind, shape, rng,
                                                                       monkeypatch):
    N, T, D, H = shape
    G = H if kind == "rnn" else 4 * H
    tiny = N * (D + H) * G <= recurrent.SMALL_MAX
    assert recurrent.is_small(N, D, H, G) == tiny
    calls = []
    for name in (f"{kind}_forward", f"{kind}_backward"):
        for kernel in (name, name + "_small"):
            original = getattr(recurrent, kernel)

            def spy(*args, _original=original, _kernel=kernel):
                calls.append(_kernel)
                return _original(*args)
            monkeypatch.setattr(recurrent, kernel, spy)
    a = _arrays(rng, kind, *shape, np.float64)
    forward = getattr(rnn_layers, f"{kind}_forward")
    backward = getattr(rnn_layers, f"{kind}_backward")
    out, cache = forward(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"])
    grads = backward(a["dh"], cache)
    suffix = "_small" if tiny else ""
    assert calls == [f"{kind}_forward{suffix}", f"{kind}_backward{suffix}"]
    ref_out, ref_cache = getattr(reference, f"{kind}_forward")(a["x"], a["h0"], a["Wx"],
                                                               a["Wh"], a["b"])
    ref_grads = getattr(reference, f"{kind}_backward")(a["dh"], ref_cache)
    for got, want in zip((out, *grads), (ref_out, *ref_grads)):
        assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_arrays_that_numba_returns_take_the_fast_path(rng):
    """Numba's arrays carry their own copy of the dtype, not NumPy's singleton: the fast check
    must still accept them (or every chained layer call would pay for the slow path)."""
    a = _arrays(rng, "rnn", 2, 3, 4, 5, np.float64)
    h, cache = rnn_layers.rnn_forward(a["x"], a["h0"], a["Wx"], a["Wh"], a["b"])
    assert h.dtype == np.float64
    assert usable_as_is((h, a["x"], cache.hs))
    assert usable_as_is((a["x"], h))
    assert not usable_as_is((a["x"], h.astype(np.float32)))
    assert not usable_as_is((h[:, ::2], a["x"]))
    frozen = h.copy()
    frozen.flags.writeable = False
    assert not usable_as_is((a["x"], frozen))
