"""Models built from the fastrnn layers.

* :class:`fastrnn.classifiers.rnn.CaptioningRNN`: the captioning RNN/LSTM.
* :class:`fastrnn.classifiers.transformer.ClassificationTransformer`: the problem set's
  one-layer Transformer encoder that judges sentences.

:func:`build` makes either from its kind (class name), the keyword arguments its ``config()``
returns and its vocabulary; :func:`from_checkpoint` does it from a checkpoint, which records all
three (checkpoints of version 3 and later).
"""
import importlib
import json

__all__ = ["build", "from_checkpoint", "MODEL_KINDS"]

#: kind -> (module, keyword fixing the initial draws: building never touches np.random's stream)
MODEL_KINDS = {
    "CaptioningRNN": ("fastrnn.classifiers.rnn", {"rng": 0}),
    "ClassificationTransformer": ("fastrnn.classifiers.transformer", {"seed": 0}),
}


def build(kind, config, vocabulary):
    """A new model of class ``kind`` made with ``config`` (its ``config()``) and ``vocabulary``.

    Raises
    ------
    ValueError naming the kind or the keyword that does not fit (TypeError from the class for
    a keyword it does not take is reported as ValueError too).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}: expected one of {sorted(MODEL_KINDS)}")
    module, fixed = MODEL_KINDS[kind]
    model_class = getattr(importlib.import_module(module), kind)
    try:
        return model_class(vocabulary, **config, **fixed)
    except TypeError as err:
        raise ValueError(f"a {kind} cannot be built from {config}: {err}") from err


def from_checkpoint(checkpoint, path):
    """The model a checkpoint of version 3 or later holds (``checkpoint = read_checkpoint(path)``),
    with its parameters.

    Raises
    ------
    ValueError naming the file: a checkpoint without a model kind (version 1 or 2), without a
    vocabulary, or whose parameters do not fit the model its configuration builds.
    """
    kind = checkpoint["attrs"].get("model_kind")
    if kind is None or checkpoint["model_config"] is None:
        raise ValueError(f"checkpoint {path!r} records no model kind (written before version 3)")
    if "word_to_idx" not in checkpoint["json"]:
        raise ValueError(f"checkpoint {path!r} records no vocabulary: the model cannot be rebuilt")
    vocabulary = json.loads(checkpoint["json"]["word_to_idx"])
    try:
        model = build(kind, checkpoint["model_config"], vocabulary)
    except (ValueError, TypeError) as err:
        raise ValueError(f"checkpoint {path!r}: {err}") from err
    params = checkpoint["params"]
    if set(params) != set(model.params):
        raise ValueError(f"checkpoint {path!r}: parameters {sorted(params)} do not match a {kind}'s "
                         f"{sorted(model.params)}")
    for name, value in model.params.items():
        if params[name].shape != value.shape or params[name].dtype != value.dtype:
            raise ValueError(f"checkpoint {path!r}: parameter {name!r} is {params[name].shape} "
                             f"{params[name].dtype}, the {kind} its configuration builds has "
                             f"{value.shape} {value.dtype}")
    model.params.update(params)
    return model
