"""fastrnn.optim against the classic course's published expected values, plus dtype/mutation."""
import numpy as np
import pytest

from fastrnn import optim
from fastrnn.gradient_check import rel_error

N, D = 4, 5


def _linspace(start, stop):
    return np.linspace(start, stop, num=N * D).reshape(N, D)


@pytest.fixture
def w_dw():
    return _linspace(-0.4, 0.6), _linspace(-0.6, 0.4)


def test_sgd_momentum_matches_classic_values(w_dw):
    w, dw = w_dw
    config = {"learning_rate": 1e-3, "velocity": _linspace(0.6, 0.9)}
    next_w, config = optim.sgd_momentum(w, dw, config=config)
    expected_next_w = np.asarray([
        [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
        [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
        [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
        [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096]])
    expected_velocity = np.asarray([
        [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
        [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
        [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
        [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096]])
    assert rel_error(next_w, expected_next_w) < 1e-8
    assert rel_error(config["velocity"], expected_velocity) < 1e-8
    assert config["momentum"] == 0.9


def test_rmsprop_matches_classic_values(w_dw):
    w, dw = w_dw
    config = {"learning_rate": 1e-2, "cache": _linspace(0.6, 0.9)}
    next_w, config = optim.rmsprop(w, dw, config=config)
    expected_next_w = np.asarray([
        [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
        [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
        [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
        [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619]])
    expected_cache = np.asarray([
        [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
        [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
        [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
        [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926]])
    assert rel_error(next_w, expected_next_w) < 1e-7
    assert rel_error(config["cache"], expected_cache) < 1e-7


def test_adam_matches_classic_values(w_dw):
    w, dw = w_dw
    config = {"learning_rate": 1e-2, "m": _linspace(0.6, 0.9), "v": _linspace(0.7, 0.5), "t": 5}
    next_w, config = optim.adam(w, dw, config=config)
    expected_next_w = np.asarray([
        [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
        [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
        [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
        [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459]])
    expected_v = np.asarray([
        [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
        [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
        [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
        [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966]])
    expected_m = np.asarray([
        [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
        [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
        [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
        [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85]])
    # The expected values are printed to 8 decimals; 0.01971428 alone is only good to 1.3e-7.
    assert rel_error(next_w, expected_next_w) < 2e-7
    assert rel_error(config["v"], expected_v) < 1e-7
    assert rel_error(config["m"], expected_m) < 1e-7
    assert config["t"] == 6  # incremented before use


def test_sgd_step_and_default_learning_rate(w_dw):
    w, dw = w_dw
    next_w, config = optim.sgd(w, dw)
    assert config["learning_rate"] == 1e-2
    np.testing.assert_allclose(next_w, w - 1e-2 * dw, rtol=0, atol=0)


@pytest.mark.parametrize("rule, defaults", [
    ("sgd", {"learning_rate": 1e-2}),
    ("sgd_momentum", {"learning_rate": 1e-2, "momentum": 0.9}),
    ("rmsprop", {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8}),
    ("adam", {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 1}),
])
def test_classic_defaults_fill_an_empty_config(rule, defaults, rng):
    w = rng.standard_normal((3, 2))
    _, config = getattr(optim, rule)(w, rng.standard_normal((3, 2)), {})
    for key, value in defaults.items():
        assert config[key] == value, key


def test_adam_first_step_moves_each_weight_by_about_the_learning_rate(rng):
    # With t = 1 the bias correction makes m/sqrt(v) = sign(dw): the classic Adam property.
    w = rng.standard_normal(50)
    dw = rng.standard_normal(50)
    next_w, _ = optim.adam(w, dw, {"learning_rate": 1e-3})
    # epsilon = 1e-8 next to sqrt(v) = 0.03 |dw| shifts a small |dw|'s step by ~3e-7 / |dw|.
    np.testing.assert_allclose(w - next_w, 1e-3 * np.sign(dw), rtol=1e-4)


@pytest.mark.parametrize("rule", optim.__all__)
def test_float32_stays_float32_and_inputs_are_not_mutated(rule, rng):
    w = rng.standard_normal((6, 7)).astype(np.float32)
    dw = rng.standard_normal((6, 7)).astype(np.float32)
    w_before, dw_before = w.copy(), dw.copy()
    config = {}
    for _ in range(3):  # state arrays must stay float32 across steps, too
        next_w, config = getattr(optim, rule)(w, dw, config)
    assert next_w.dtype == np.float32
    for value in config.values():
        if isinstance(value, np.ndarray):
            assert value.dtype == np.float32
    np.testing.assert_array_equal(w, w_before)
    np.testing.assert_array_equal(dw, dw_before)
    assert not np.array_equal(next_w, w)


@pytest.mark.parametrize("shape", [(37, 29), (300, 700)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_adam_matches_the_numpy_formulas(dtype, shape):
    """The one-pass kernel (C-contiguous arrays; one thread for a small parameter, the threaded
    one for a large one) against the NumPy expressions (the same update on strided views), over
    three steps, in the weights' dtype; nothing mutated."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(shape).astype(dtype)
    fused_w, strided_w = w.copy(), np.asfortranarray(w)
    fused, strided = {"learning_rate": 3e-3}, {"learning_rate": 3e-3}
    for _ in range(3):
        dw = rng.standard_normal(w.shape).astype(dtype)
        before = (fused_w.copy(), dw.copy())
        fused_w, fused = optim.adam(fused_w, dw, fused)
        np.testing.assert_array_equal(before[1], dw)
        strided_w, strided = optim.adam(strided_w, np.asfortranarray(dw), strided)
        assert fused_w.dtype == dtype and fused["m"].dtype == dtype
        assert not np.shares_memory(fused_w, before[0])
    # Compiled without fast-math, the kernel rounds every operation as NumPy does: bit for bit.
    for got, want in ((fused_w, strided_w), (fused["m"], strided["m"]), (fused["v"], strided["v"])):
        np.testing.assert_array_equal(got, want)
    assert fused["t"] == strided["t"] == 3


@pytest.mark.parametrize("shape", [(300, 700), (7, 9)])
@pytest.mark.parametrize("layout", ["fused", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_counting_finds_non_finite_gradients_and_weights(layout, dtype, shape):
    """The solver's one-pass check: a NaN or inf anywhere in dw (scaled) or in the new weights,
    including ones computed in the kernel's own loop (a huge learning rate), in the first and
    the last work item of a large parameter (threaded) and in a small one (one thread)."""
    def run(w, dw, config, scale=1.0):
        if layout == "numpy":
            w, dw = np.asfortranarray(w), np.asfortranarray(dw)
        with np.errstate(over="ignore", invalid="ignore"):
            return optim.adam_counting(w, dw, config, scale)[2:]

    w = np.ones(shape, dtype)  # (300, 700): four work items of the threaded kernel
    dw = np.full(shape, 0.5, dtype)
    assert run(w, dw, {"learning_rate": 1e-3}) == (True, True)
    assert run(w, dw, {"learning_rate": 1e-3}, scale=0.25) == (True, True)
    for where in ((0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, 3)):
        for value in (np.nan, np.inf, -np.inf):
            bad = dw.copy()
            bad[where] = value
            assert run(w, bad, {"learning_rate": 1e-3}) == (False, False)
    huge = float(np.finfo(dtype).max) * 4 if dtype == np.float64 else 1e300
    assert run(w, dw, {"learning_rate": huge}) == (True, False)
    w_nan = w.copy()
    w_nan[-1, -1] = np.nan
    assert run(w_nan, dw, {"learning_rate": 1e-3}) == (True, False)


def test_adam_counting_scales_the_gradient_as_clipping_does():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((40, 30)).astype(np.float32)
    dw = rng.standard_normal((40, 30)).astype(np.float32)
    scaled, _ = optim.adam(w, (dw * 0.3).astype(np.float32), {"learning_rate": 1e-2})
    got, _, gradient_finite, weights_finite = optim.adam_counting(w, dw, {"learning_rate": 1e-2},
                                                                  scale=0.3)
    np.testing.assert_array_equal(got, scaled)
    assert gradient_finite and weights_finite
