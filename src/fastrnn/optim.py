"""First-order update rules, with the classic course API.

Every rule has the signature ``rule(w, dw, config=None) -> (next_w, config)``:

* ``w``: array of weights, any shape.
* ``dw``: gradient of the loss with respect to ``w``, same shape.
* ``config``: dict of hyperparameters and per-parameter state (moments, step counter).  Missing
  entries are filled with the classic defaults by ``setdefault``, so the same dict carries the
  state from one call to the next.  It is updated and returned, as in the classic code.

Unlike some circulating versions of the classic code, ``w`` is never modified in place:
``next_w`` is a new array of ``w``'s dtype (float32 stays float32).  Scalar hyperparameters
are turned into Python floats before they meet an array, so that NumPy 2's promotion rules
never lift a float32 update to float64.

``adam`` runs as one Numba kernel pass over the weights when ``w``, ``dw``, ``m`` and ``v`` are
C-contiguous arrays of one float dtype (NumPy's version makes about ten passes, each with a
temporary: docs/performance.md, M25); otherwise as NumPy expressions.
Both compute in the weights' dtype with the same formulas.
"""
import numpy as np

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam"]


def _as_weight_dtype(next_w, w):
    return np.asarray(next_w).astype(np.asarray(w).dtype, copy=False)


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: ``next_w = w - learning_rate * dw``.

    config: learning_rate (1e-2).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    next_w = w - float(config["learning_rate"]) * dw
    return _as_weight_dtype(next_w, w), config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: ``v = momentum * v - learning_rate * dw; next_w = w + v``.

    config: learning_rate (1e-2), momentum (0.9), velocity (zeros like w).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v = float(config["momentum"]) * v - float(config["learning_rate"]) * dw
    config["velocity"] = _as_weight_dtype(v, w)
    return _as_weight_dtype(w + config["velocity"], w), config


def rmsprop(w, dw, config=None):
    """RMSProp: a moving average of squared gradients scales each step.

    config: learning_rate (1e-2), decay_rate (0.99), epsilon (1e-8), cache (zeros like w).
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    decay = float(config["decay_rate"])
    cache = decay * config["cache"] + (1 - decay) * (dw * dw)
    config["cache"] = _as_weight_dtype(cache, w)
    step = float(config["learning_rate"]) * dw / (np.sqrt(config["cache"]) + float(config["epsilon"]))
    return _as_weight_dtype(w - step, w), config


def adam(w, dw, config=None):
    """Adam with bias correction; ``t`` is incremented before it is used.

    config: learning_rate (1e-3), beta1 (0.9), beta2 (0.999), epsilon (1e-8), m and v (zeros
    like w), t (0).  The step is ``lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``.
    """
    next_w, config, _, _ = adam_counting(w, dw, config)
    return next_w, config


def adam_counting(w, dw, config=None, scale=1.0):
    """:func:`adam` on ``scale * dw``, also telling whether the gradient and the new weights are
    finite: ``(next_w, config, gradient_finite, weights_finite)``.

    The solvers use it to refuse a non-finite update without another pass over the arrays.
    C-contiguous arrays of one float dtype take one fused kernel (threaded, no temporaries);
    anything else NumPy's expressions.  ``scale`` is the gradient-clipping factor.
    """
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    beta1, beta2 = float(config["beta1"]), float(config["beta2"])
    epsilon = float(config["epsilon"])
    t = int(config["t"]) + 1
    alpha = float(float(config["learning_rate"]) * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t))
    if _one_float_layout(w, dw, config["m"], config["v"]):
        from ._kernels.optim import CHUNK, adam_update, adam_update_small
        next_w, m, v = np.empty_like(w), np.empty_like(w), np.empty_like(w)
        real = w.dtype.type
        args = (w.reshape(-1), dw.reshape(-1), config["m"].reshape(-1), config["v"].reshape(-1),
                real(scale), real(beta1), real(1 - beta1), real(beta2), real(1 - beta2),
                real(alpha), real(epsilon), next_w.reshape(-1), m.reshape(-1), v.reshape(-1))
        if w.size <= CHUNK:
            bad_gradients, bad_weights = adam_update_small(*args)
        else:
            from ._workspace import call_threaded
            bad = np.empty((-(-w.size // CHUNK), 2), dtype=np.int64)
            call_threaded(adam_update, *args, bad)
            bad_gradients, bad_weights = bad.sum(axis=0)
        gradient_finite, weights_finite = bool(bad_gradients == 0), bool(bad_weights == 0)
    else:
        if scale != 1.0:
            dw = _as_weight_dtype(dw * scale, dw)
        m = _as_weight_dtype(beta1 * config["m"] + (1 - beta1) * dw, w)
        v = _as_weight_dtype(beta2 * config["v"] + (1 - beta2) * (dw * dw), w)
        next_w = _as_weight_dtype(w - alpha * (m / (np.sqrt(v) + epsilon)), w)
        gradient_finite = bool(np.isfinite(dw).all())
        weights_finite = bool(np.isfinite(next_w).all())
    config["t"], config["m"], config["v"] = t, m, v
    return next_w, config, gradient_finite, weights_finite


def _one_float_layout(*arrays):
    """True when the arrays are C-contiguous ndarrays of one shape and one float dtype."""
    first = arrays[0]
    if type(first) is not np.ndarray or first.dtype not in (np.float32, np.float64):
        return False
    return all(type(a) is np.ndarray and a.dtype == first.dtype and a.shape == first.shape
               and a.flags.c_contiguous for a in arrays)
