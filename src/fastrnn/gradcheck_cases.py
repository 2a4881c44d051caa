"""The numeric gradient checks behind ``fastrnn gradcheck``: one table row per layer and model.

Each :class:`Case` names a function of a layer API, how to draw its inputs (float64, tiny shapes)
from a seed, and which arguments' gradients to check.  :func:`run_cases` compares the numeric
gradients of :mod:`fastrnn.gradient_check` (centred differences) with the analytic ones and
returns ``(function, argument, relative error)`` rows.  A new layer is one more row in
:data:`CAPTIONING_CASES` or :data:`TRANSFORMER_CASES`.

Three kinds of case, told apart by their fields:

* a layer (``backward`` set): ``*outputs, cache = forward(*inputs)``; with a random upstream
  gradient ``dout`` per output, the backward ``backward(*douts, cache)`` is compared with the
  numeric gradient of ``sum(output * dout)`` over the outputs;
* a loss (no ``backward``): ``loss, dx = forward(*inputs)``, ``dx`` the gradient of ``grads[0]``;
* a model (``grads=PARAMS``): the inputs hold a ``model`` built by the case, ``forward`` returns
  ``model.loss(...)``'s ``(loss, {name: grad})``, and every array of ``model.params`` is checked.
"""
from typing import Callable, NamedTuple, Optional, Tuple, Union

import numpy as np

from .gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

__all__ = ["GRADCHECK_TOLERANCE", "PARAMS", "Case", "CAPTIONING_CASES", "TRANSFORMER_CASES",
           "CASES", "run_cases", "gradcheck_rows", "model_gradcheck_rows",
           "transformer_gradcheck_rows"]

GRADCHECK_TOLERANCE = 1e-5  # the classic code reaches up to ~3e-6 on the LSTM's dWh
PARAMS = "params"           # Case.grads of a model: every array of model.params


class Case(NamedTuple):
    """One gradient check: a row of the table.

    name : the table's function column
    api : the layer API the case runs on, "captioning" (:mod:`fastrnn.rnn_layers`) or
        "transformer" (:mod:`fastrnn.transformer_layers`)
    inputs : ``inputs(rng, layers) -> {argument: value}``, in the forward's argument order
    forward : the API function's name, or a callable ``forward(layers, *values)``
    backward : the API's backward function's name; None when the forward returns
        ``(loss, gradients)``
    grads : the arguments whose gradients the backward (or loss) returns, in its order (default:
        every input), or PARAMS for a model
    skip : gradients left out of the table
    keywords : inputs passed by keyword (the rest go by position)
    """
    name: str
    api: str
    inputs: Callable
    forward: Union[str, Callable]
    backward: Optional[str] = None
    grads: Union[Tuple[str, ...], str, None] = None
    skip: Tuple[str, ...] = ()
    keywords: Tuple[str, ...] = ()


def _normal(rng, **shapes):
    """{name: standard normal array of that shape}, drawn in the order given."""
    return {name: rng.standard_normal(shape) for name, shape in shapes.items()}


def _model_loss(layers, model, *data):
    return model.loss(*data)


# ------------------------------------------------------------------- captioning (rnn_layers)
N, T, D, H, V = 3, 4, 5, 6, 7


def _captioning_model(cell_type):
    def inputs(rng, layers):
        from fastrnn.classifiers.rnn import CaptioningRNN
        word_to_idx = {"<NULL>": 0, "<START>": 1, "<END>": 2, "cat": 3, "dog": 4}
        captions = rng.integers(len(word_to_idx), size=(2, 4))
        features = rng.standard_normal((2, 3))
        model = CaptioningRNN(word_to_idx, input_dim=3, wordvec_dim=4, hidden_dim=5,
                              cell_type=cell_type, dtype=np.float64, rng=rng, layers=layers)
        # Unit-scale weights: the classic init (W_embed / 100) makes dWx tiny, and the relative
        # error of a tiny gradient measures round-off in the loss, not the gradient.
        for name, value in model.params.items():
            model.params[name] = 0.5 * rng.standard_normal(value.shape)
        return {"model": model, "features": features, "captions": captions}
    return Case(f"CaptioningRNN({cell_type})", "captioning", inputs, _model_loss, grads=PARAMS)


CAPTIONING_CASES = (
    Case("affine", "captioning", lambda rng, _: _normal(rng, x=(N, D), w=(D, H), b=H),
         "affine_forward", "affine_backward"),
    Case("rnn_step", "captioning",
         lambda rng, _: _normal(rng, x=(N, D), prev_h=(N, H), Wx=(D, H), Wh=(H, H), b=H),
         "rnn_step_forward", "rnn_step_backward"),
    Case("rnn", "captioning",
         lambda rng, _: _normal(rng, x=(N, T, D), h0=(N, H), Wx=(D, H), Wh=(H, H), b=H),
         "rnn_forward", "rnn_backward"),
    Case("word_embedding", "captioning",
         lambda rng, _: {"x": rng.integers(V, size=(N, T)), "W": rng.standard_normal((V, D))},
         "word_embedding_forward", "word_embedding_backward", grads=("W",)),
    Case("lstm_step", "captioning",
         lambda rng, _: _normal(rng, x=(N, D), prev_h=(N, H), prev_c=(N, H), Wx=(D, 4 * H),
                                Wh=(H, 4 * H), b=4 * H),
         "lstm_step_forward", "lstm_step_backward"),
    Case("lstm", "captioning",
         lambda rng, _: _normal(rng, x=(N, T, D), h0=(N, H), Wx=(D, 4 * H), Wh=(H, 4 * H),
                                b=4 * H),
         "lstm_forward", "lstm_backward"),
    Case("temporal_affine", "captioning",
         lambda rng, _: _normal(rng, x=(N, T, D), w=(D, V), b=V),
         "temporal_affine_forward", "temporal_affine_backward"),
    Case("temporal_softmax_loss", "captioning",
         lambda rng, _: {"x": rng.standard_normal((N, T, V)), "y": rng.integers(V, size=(N, T)),
                         "mask": rng.random((N, T)) > 0.3},
         "temporal_softmax_loss", grads=("x",)),
    _captioning_model("rnn"),
    _captioning_model("lstm"),
)


# ------------------------------------------------------------------- transformer_layers
TN, TT, TD, HEADS, DK, DV, F, TV = 2, 4, 5, 2, 3, 2, 6, 7
# A key bias's gradient is zero in exact arithmetic (it adds the same constant to all of a
# query's scores, which the softmax cancels): its relative error compares two round-off residues.
KEY_BIASES = tuple(f"k{i}.bias" for i in range(1, HEADS + 1))


def _attention_inputs(rng, _):
    return {**_normal(rng, x=(TN, TT, TD), Wq=(TD, HEADS * DK), bq=HEADS * DK,
                      Wk=(TD, HEADS * DK), bk=HEADS * DK, Wv=(TD, HEADS * DV), bv=HEADS * DV),
            "num_heads": HEADS}


def _transformer_model(rng, layers):
    from fastrnn.classifiers.transformer import ClassificationTransformer
    model = ClassificationTransformer({str(i): i for i in range(TV)}, hidden_dim=TD,
                                      num_heads=HEADS, dim_feedforward=F, dim_k=DK, dim_v=DV,
                                      dim_q=DK, max_length=TT, dtype=np.float64,
                                      seed=int(rng.integers(2**31)), layers=layers)
    return {"model": model, "inputs": rng.integers(TV, size=(TN, TT)),
            "labels": rng.integers(2, size=TN)}


TRANSFORMER_CASES = (
    Case("multi_head_attention", "transformer", _attention_inputs,
         "multi_head_attention_forward", "multi_head_attention_backward",
         grads=("x", "Wq", "bq", "Wk", "bk", "Wv", "bv"), skip=("bk",)),
    Case("multi_head_attention(num_queries=1)", "transformer",
         lambda rng, layers: {**_attention_inputs(rng, layers), "num_queries": 1},
         "multi_head_attention_forward", "multi_head_attention_backward",
         grads=("x", "Wq", "bq", "Wk", "bk", "Wv", "bv"), skip=("bk",),
         keywords=("num_queries",)),
    Case("layernorm", "transformer",
         lambda rng, _: _normal(rng, x=(TN, TT, TD), gamma=TD, beta=TD, residual=(TN, TT, TD)),
         "layernorm_forward", "layernorm_backward", grads=("x", "gamma", "beta"),
         keywords=("residual",)),
    Case("affine_relu", "transformer", lambda rng, _: _normal(rng, x=(TN, TT, TD), w=(TD, F), b=F),
         "affine_relu_forward", "affine_relu_backward"),
    Case("positional_embedding", "transformer",
         lambda rng, _: {"x": rng.integers(TV, size=(TN, TT)),
                         **_normal(rng, W_tok=(TV, TD), W_pos=(TT + 1, TD))},
         "positional_embedding_forward", "positional_embedding_backward",
         grads=("W_tok", "W_pos")),
    Case("sigmoid_bce_loss", "transformer",
         lambda rng, _: {"x": 3 * rng.standard_normal((TN, 1)), "y": rng.integers(2, size=TN)},
         "sigmoid_bce_loss", grads=("x",)),
    Case("ClassificationTransformer", "transformer", _transformer_model, _model_loss,
         grads=PARAMS, skip=KEY_BIASES),
)

CASES = CAPTIONING_CASES + TRANSFORMER_CASES


# ------------------------------------------------------------------- the runner

def _default_layers(api):
    if api == "captioning":
        from fastrnn import rnn_layers
        return rnn_layers
    from fastrnn import transformer_layers
    return transformer_layers


def _check(case, layers, rng):
    """The (name, argument, relative error) rows of one case."""
    values = case.inputs(rng, layers)
    positional = [value for name, value in values.items() if name not in case.keywords]
    keywords = {name: values[name] for name in case.keywords}
    forward = getattr(layers, case.forward) if isinstance(case.forward, str) else \
        (lambda *args, **kwargs: case.forward(layers, *args, **kwargs))

    def run():
        return forward(*positional, **keywords)

    if case.backward is None:   # a loss or a model: forward returns (loss, gradients)
        _, analytic = run()
        if case.grads == PARAMS:
            arrays = values["model"].params
        else:
            arrays = {name: values[name] for name in case.grads}
            analytic = dict(zip(case.grads, (analytic,)))
        return [(case.name, name, rel_error(
                    eval_numerical_gradient(lambda _: run()[0], array, verbose=False),
                    analytic[name]))
                for name, array in arrays.items() if name not in case.skip]

    *outputs, cache = run()
    douts = [rng.standard_normal(np.shape(output)) for output in outputs]
    analytic = getattr(layers, case.backward)(*douts, cache)
    analytic = analytic if isinstance(analytic, tuple) else (analytic,)
    rows = []
    for name, grad in zip(case.grads or tuple(values), analytic):
        if name in case.skip:
            continue
        numeric = 0
        for k, dout in enumerate(douts):   # the gradient of sum_k <output_k, dout_k>
            numeric = numeric + eval_numerical_gradient_array(lambda _: run()[k], values[name],
                                                              dout)
        rows.append((case.name, name, rel_error(numeric, grad)))
    return rows


def run_cases(cases, layers=None, seed=0):
    """Numeric vs analytic gradients of ``cases`` (float64, tiny shapes).

    Parameters
    ----------
    cases : iterable of Case
    layers : module or namespace, optional
        The layer API every case runs on; default per case, :mod:`fastrnn.rnn_layers` for the
        captioning cases and :mod:`fastrnn.transformer_layers` for the Transformer's.
    seed : int
        Each case draws its inputs from ``np.random.default_rng(seed)`` of its own.

    Returns
    -------
    list of (function, argument, relative error) tuples, in the cases' order.
    """
    rows = []
    for case in cases:
        api = _default_layers(case.api) if layers is None else layers
        rows.extend(_check(case, api, np.random.default_rng(seed)))
    return rows


def gradcheck_rows(layers=None, seed=0):
    """The captioning layers' and CaptioningRNN's rows; ``layers`` default
    :mod:`fastrnn.rnn_layers`."""
    return run_cases(CAPTIONING_CASES, layers, seed)


def model_gradcheck_rows(layers=None, seed=0):
    """CaptioningRNN's rows (rnn and lstm): ("CaptioningRNN(<cell>)", parameter, error)."""
    return run_cases([case for case in CAPTIONING_CASES if case.grads == PARAMS], layers, seed)


def transformer_gradcheck_rows(layers=None, seed=0):
    """The Transformer layers' and ClassificationTransformer's rows (the key biases left out,
    see :data:`KEY_BIASES`); ``layers`` default :mod:`fastrnn.transformer_layers`."""
    return run_cases(TRANSFORMER_CASES, layers, seed)
