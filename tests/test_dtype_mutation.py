"""dtypes in and out, no input mutation, repeatable backward, no aliasing between results."""
import types

import numpy as np
import pytest

import fastrnn.reference as reference
from _helpers import (CASES, LSTM_STEP, RNN, RNN_STEP,
                      assert_outputs_close, cast_floats, check_no_mutation,
                      check_outputs_independent, module_for)

DTYPES = [np.float32, np.float64]
CASE_IDS = [c.name for c in CASES]


def output_dtype(value):
    return np.asarray(value).dtype


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_dtype_is_kept(case, dtype, any_impl, rng):
    """float32 in -> every output float32 (the loss scalar too); float64 likewise."""
    arrays = cast_floats(case.build(rng, **case.default_shape), dtype)
    results = case.run(any_impl, arrays)
    got = {name: output_dtype(v) for name, v in zip(case.names, results)}
    assert got == dict.fromkeys(case.names, np.dtype(dtype))


def _float_args(case, arrays):
    return [k for k, v in arrays.items() if np.issubdtype(v.dtype, np.floating)]


MIXED = [pytest.param(case, arg, id=f"{case.name}-{arg}") for case in CASES
         for arg in _float_args(case, case.build(np.random.default_rng(0), **case.default_shape))
         if len(_float_args(case, case.build(np.random.default_rng(0), **case.default_shape)))
         > 1]


@pytest.mark.parametrize("case,wide_arg", MIXED)
def test_mixed_dtypes_promote(case, wide_arg, fast, fast_layers, ref, rng):
    """One float64 argument among float32 ones: NumPy promotion, i.e. float64 results wherever
    that argument is involved (forward outputs if it is a forward input; every gradient), and
    then the values are those of a float64 computation (not float32 ones cast up)."""
    module = module_for(case, fast, fast_layers)
    arrays = cast_floats(case.build(rng, **case.default_shape), np.float32)
    arrays[wide_arg] = arrays[wide_arg].astype(np.float64) + 1e-9  # not float32-representable
    results = case.run(module, arrays)
    forward_wide = wide_arg in case.forward_args
    expected = {name: np.dtype(np.float64 if forward_wide else np.float32)
                for name in case.forward_names}
    expected.update(dict.fromkeys(case.backward_names, np.dtype(np.float64)))
    got = {name: output_dtype(v) for name, v in zip(case.names, results)}
    assert got == expected
    if forward_wide:
        wide = cast_floats(arrays, np.float64)
        assert_outputs_close(results, case.run(ref, wide), case.names, np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_no_input_mutated_and_backward_repeatable(case, dtype, any_impl, rng):
    """Every input (weights, dnext_c, dh, dout, masks, indices) and every cache array is
    bitwise unchanged by forward and backward; backward twice gives identical results."""
    arrays = cast_floats(case.build(rng, **case.default_shape), dtype)
    check_no_mutation(case, any_impl, arrays)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_outputs_do_not_alias(case, fast, fast_layers, rng):
    """Outputs share no memory with each other or the inputs; a later call leaves them alone;
    editing a returned h (or gradient) in place changes nothing a backward returns."""
    module = module_for(case, fast, fast_layers)
    arrays = case.build(rng, **case.default_shape)
    other = case.build(rng, **case.default_shape)
    check_outputs_independent(case, module, arrays, other)


# ---- the checks above can fail ------------------------------------------------------------------
def _mutating_module():
    """The reference with the classic lstm_step_backward bug: dnext_c += ... in place."""
    def lstm_step_backward(dnext_h, dnext_c, cache):
        grads = reference.lstm_step_backward(dnext_h, dnext_c, cache)
        dnext_c += 1.0  # what the buggy versions' `dnext_c += ...` does to the caller's array
        return grads
    return types.SimpleNamespace(lstm_step_forward=reference.lstm_step_forward,
                                 lstm_step_backward=lstm_step_backward)


def _cache_mutating_module():
    """The reference, but rnn_backward scales a cached hidden state in place."""
    def rnn_backward(dh, cache):
        cache[-1][4][...] *= 0.5
        return reference.rnn_backward(dh, cache)
    return types.SimpleNamespace(rnn_forward=reference.rnn_forward, rnn_backward=rnn_backward)


def test_mutation_check_catches_input_mutation(rng):
    arrays = LSTM_STEP.build(rng, **LSTM_STEP.default_shape)
    with pytest.raises(AssertionError, match="dnext_c"):
        check_no_mutation(LSTM_STEP, _mutating_module(), arrays)


def test_mutation_check_catches_cache_mutation(rng):
    arrays = RNN.build(rng, **RNN.default_shape)
    with pytest.raises(AssertionError, match="cache"):
        check_no_mutation(RNN, _cache_mutating_module(), arrays)


def test_alias_check_catches_cached_output(rng):
    """The reference rnn_step_forward keeps next_h itself in its cache (as the classic code
    does), so editing the returned next_h changes what its backward computes."""
    arrays = RNN_STEP.build(rng, **RNN_STEP.default_shape)
    other = RNN_STEP.build(rng, **RNN_STEP.default_shape)
    with pytest.raises(AssertionError, match="differs"):
        check_outputs_independent(RNN_STEP, reference, arrays, other)


def test_dtype_check_catches_float64_allocation(rng):
    """The classic rnn_forward bug (h = np.zeros((N, T, H)) -> float64 for float32 input)."""
    def rnn_forward(x, h0, Wx, Wh, b):
        h, cache = reference.rnn_forward(x, h0, Wx, Wh, b)
        return h.astype(np.float64), cache
    buggy = types.SimpleNamespace(rnn_forward=rnn_forward, rnn_backward=reference.rnn_backward)
    with pytest.raises(AssertionError):
        test_dtype_is_kept(RNN, np.float32, buggy, rng)
