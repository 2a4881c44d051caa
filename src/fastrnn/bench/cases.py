"""The benchmark cases: the speed table's rows, their inputs, and the work each implementation does
(NumPy layer modules and PyTorch).  Shared with ``asv_bench/benchmarks``."""
import fnmatch
import importlib
import math
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1
IMPLEMENTATIONS = ("classic", "fastrnn", "torch")
DEFAULT_FAST_MODULE = "fastrnn.rnn_layers"
CLASSIC_MODULE = "fastrnn.reference"
SLOW_BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Environment variables that change what a figure means; reported with every run.
REPORTED_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_", "NUMBA_", "FASTRNN_", "GOTO", "BLIS_")

CAPTION_FEATURE_DIM = 512   # CaptioningRNN input_dim default (VGG16 fc7 PCA features)
VOCAB_SIZE = 1004           # the real COCO vocabulary
FLOAT32_ACCURACY = "fastrnn <= classic"   # both against float64, worst output
FLOAT64_TOLERANCE = 1e-12                 # fastrnn vs classic, relative, worst output


@dataclass(frozen=True)
class Case:
    """One row of the speed table.

    ``kind`` is one of ``rnn``, ``lstm`` (sequence forward+backward, shape (N, T, D, H)),
    ``captioning`` (the model's loss and gradients, shape (N, T, W, H)), ``train_step`` (one
    ``CaptioningSolver`` Adam step: minibatch, loss, gradients, update), ``embedding_backward``
    (shape (N, T, V, D),
    only ``word_embedding_backward`` is timed), ``softmax_loss`` (shape (N, T, V)) and
    ``transformer`` (ClassificationTransformer loss + gradients, shape (N, T, H, feed-forward,
    head width); "classic" is the model on :mod:`fastrnn.reference`'s layers).
    ``target_classic`` / ``target_torch`` are the speed-ups the issue asks for (None: no target).
    """

    name: str
    kind: str
    shape: tuple
    dtype: str
    target_classic: float = None
    target_torch: float = None

    @property
    def label(self):
        titles = {"rnn": "RNN", "lstm": "LSTM", "captioning": "captioning step",
                  "train_step": "training step (solver, Adam)",
                  "embedding_backward": "word_embedding_backward",
                  "softmax_loss": "temporal_softmax_loss", "transformer": "Transformer step"}
        return f"{titles[self.kind]} {', '.join(map(str, self.shape))}, {self.dtype}"


def _case(kind, shape, dtype, target_classic=None, target_torch=None):
    name = f"{kind}_{'x'.join(map(str, shape))}_{'f32' if dtype == 'float32' else 'f64'}"
    return Case(name, kind, tuple(shape), dtype, target_classic, target_torch)


# The table of the speed issue; shapes are (N, T, D, H) unless the kind says otherwise.
CASES = (
    _case("rnn", (2, 10, 3, 6), "float64", 10, 10),
    _case("rnn", (25, 16, 256, 512), "float32", 3, 1.5),
    _case("rnn", (100, 16, 256, 512), "float32", 3, 1.5),
    _case("lstm", (2, 10, 3, 6), "float64", 15, 15),
    _case("lstm", (10, 16, 30, 40), "float64", 5, 5),
    _case("lstm", (25, 16, 256, 512), "float64", 3, 2),
    _case("lstm", (25, 16, 256, 512), "float32", 4, 0.8),
    _case("lstm", (100, 16, 256, 512), "float32", 3.5, 0.9),
    _case("lstm", (100, 16, 512, 1024), "float32", 3.5, 0.9),
    _case("captioning", (25, 16, 256, 512), "float32", 3.5, None),
    _case("train_step", (25, 16, 256, 512), "float32"),
    _case("train_step", (100, 16, 256, 512), "float32"),
    _case("embedding_backward", (25, 16, VOCAB_SIZE, 256), "float32", 20, None),
    _case("softmax_loss", (50, 16, VOCAB_SIZE), "float32", 2, None),
    # (N, T, H, feed-forward, head width): the problem set's ClassificationTransformer, 2 heads
    _case("transformer", (32, 43, 128, 2048, 96), "float32", None, 8),
    _case("transformer", (128, 43, 128, 2048, 96), "float32", None, 8),
)
CASES_BY_NAME = {case.name: case for case in CASES}
MEMORY_CASE = "lstm_25x16x256x512_f32"
STARTUP_CASE = "lstm_25x16x256x512_f32"


def select_cases(patterns):
    """Cases whose name matches one of the comma-separated patterns (glob, or else substring)."""
    if not patterns:
        return list(CASES)
    tokens = [token.strip() for token in patterns.split(",") if token.strip()]
    chosen = []
    for case in CASES:
        for token in tokens:
            glob = any(ch in token for ch in "*?[")
            if (fnmatch.fnmatchcase(case.name, token) if glob else token in case.name):
                chosen.append(case)
                break
    return chosen


def make_inputs(case, seed=0):
    """Inputs of ``case`` as a dict of NumPy arrays, deterministic in ``seed``.

    Weights are scaled by 1/sqrt(fan-in), as the course code initialises them, so the gates stay
    out of saturation and the accuracy figures mean something.
    """
    rng = np.random.default_rng(seed)
    dtype = np.dtype(case.dtype)

    def randn(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    if case.kind in ("rnn", "lstm"):
        N, T, D, H = case.shape
        gates = 4 * H if case.kind == "lstm" else H
        return dict(x=randn(N, T, D), h0=randn(N, H, scale=0.5),
                    Wx=randn(D, gates, scale=1 / math.sqrt(D)),
                    Wh=randn(H, gates, scale=1 / math.sqrt(H)),
                    b=randn(gates, scale=0.1), dh=randn(N, T, H))
    if case.kind in ("captioning", "train_step"):
        N, T, W, H = case.shape
        F, V = CAPTION_FEATURE_DIM, VOCAB_SIZE
        # A training step samples its minibatch from a pool: 4N captions of 2N images.
        rows, images = (4 * N, 2 * N) if case.kind == "train_step" else (N, N)
        captions = rng.integers(1, V, size=(rows, T + 1)).astype(np.int32)
        for row, length in enumerate(rng.integers(T // 2, T + 2, size=rows)):
            captions[row, length:] = 0     # <NULL> padding, so the mask has False entries
        return dict(features=randn(images, F), captions=captions,
                    image_idxs=rng.integers(0, images, size=rows).astype(np.int32),
                    W_embed=randn(V, W, scale=1 / 100),
                    W_proj=randn(F, H, scale=1 / math.sqrt(F)), b_proj=np.zeros(H, dtype),
                    Wx=randn(W, 4 * H, scale=1 / math.sqrt(W)),
                    Wh=randn(H, 4 * H, scale=1 / math.sqrt(H)), b=np.zeros(4 * H, dtype),
                    W_vocab=randn(H, V, scale=1 / math.sqrt(H)), b_vocab=np.zeros(V, dtype))
    if case.kind == "embedding_backward":
        N, T, V, D = case.shape
        return dict(x=rng.integers(0, V, size=(N, T)).astype(np.int32), W=randn(V, D, scale=0.1),
                    dout=randn(N, T, D))
    if case.kind == "softmax_loss":
        N, T, V = case.shape
        return dict(x=randn(N, T, V, scale=2.0), y=rng.integers(0, V, size=(N, T)),
                    mask=rng.random((N, T)) > 0.2)
    if case.kind == "transformer":
        from fastrnn import reference
        from fastrnn.classifiers.transformer import ClassificationTransformer
        model = ClassificationTransformer(
            {str(i): i for i in range(VOCAB_SIZE)}, dtype=dtype, seed=seed, layers=reference,
            **_transformer_config(case))
        N, T = case.shape[:2]
        return dict(model.state_dict(), inputs=rng.integers(0, VOCAB_SIZE, size=(N, T)),
                    labels=rng.integers(0, 2, size=N))
    raise ValueError(f"unknown case kind {case.kind!r}")


def _transformer_config(case):
    """ClassificationTransformer sizes of a ``transformer`` case (N, T, H, feed-forward, d)."""
    _, T, H, F, d = case.shape
    return dict(hidden_dim=H, num_heads=2, dim_feedforward=F, dim_k=d, dim_v=d, dim_q=d,
                max_length=T)


def cast_inputs(inputs, dtype):
    """The same inputs with every floating array cast to ``dtype`` (integer/bool arrays kept)."""
    return {key: value.astype(dtype) if value.dtype.kind == "f" else value
            for key, value in inputs.items()}


CAPTION_PARAMS = ("W_embed", "W_proj", "b_proj", "Wx", "Wh", "b", "W_vocab", "b_vocab")


def _caption_loss(layers, p, features, captions):
    """``CaptioningRNN.loss`` with cell_type='lstm', written out with the functions of the
    layer module ``layers`` and the parameters ``p``: (loss, grads)."""
    captions_in, captions_out = captions[:, :-1], captions[:, 1:]
    mask = captions_out != 0
    h0, proj_cache = layers.affine_forward(features, p["W_proj"], p["b_proj"])
    words, embed_cache = layers.word_embedding_forward(captions_in, p["W_embed"])
    hidden, lstm_cache = layers.lstm_forward(words, h0, p["Wx"], p["Wh"], p["b"])
    scores, vocab_cache = layers.temporal_affine_forward(hidden, p["W_vocab"], p["b_vocab"])
    loss, dscores = layers.temporal_softmax_loss(scores, captions_out, mask)
    dhidden, dW_vocab, db_vocab = layers.temporal_affine_backward(dscores, vocab_cache)
    dwords, dh0, dWx, dWh, db = layers.lstm_backward(dhidden, lstm_cache)
    dW_embed = layers.word_embedding_backward(dwords, embed_cache)
    _, dW_proj, db_proj = layers.affine_backward(dh0, proj_cache)
    return loss, dict(W_embed=dW_embed, W_proj=dW_proj, b_proj=db_proj, Wx=dWx, Wh=dWh, b=db,
                      W_vocab=dW_vocab, b_vocab=db_vocab)


class _CaptioningModel:
    """The solver's model contract (``params``, ``loss``) on a given layer module: the same
    solver step times the classic layers and fastrnn's."""

    def __init__(self, layers, params):
        self.layers, self.params = layers, params

    def loss(self, features, captions):
        return _caption_loss(self.layers, self.params, features, captions)


def numpy_workload(case, layers, inputs):
    """A zero-argument callable doing the timed work of ``case`` with the layer module ``layers``.

    ``layers`` is :mod:`fastrnn.reference`, :mod:`fastrnn.rnn_layers` or anything with their API.
    The callable returns a dict of named outputs (values and gradients) for the accuracy check.
    Work outside the timed region (the embedding forward whose cache the backward needs) is done
    here, once.
    """
    p = inputs
    if case.kind in ("rnn", "lstm"):
        forward = layers.rnn_forward if case.kind == "rnn" else layers.lstm_forward
        backward = layers.rnn_backward if case.kind == "rnn" else layers.lstm_backward

        def sequence_step():
            h, cache = forward(p["x"], p["h0"], p["Wx"], p["Wh"], p["b"])
            dx, dh0, dWx, dWh, db = backward(p["dh"], cache)
            return dict(h=h, dx=dx, dh0=dh0, dWx=dWx, dWh=dWh, db=db)
        return sequence_step

    if case.kind == "captioning":
        def training_step():
            loss, grads = _caption_loss(layers, p, p["features"], p["captions"])
            return dict(loss=np.asarray(loss), **grads)
        return training_step

    if case.kind == "train_step":
        from fastrnn.captioning_solver import CaptioningSolver
        data = dict(train_captions=p["captions"], train_image_idxs=p["image_idxs"],
                    train_features=p["features"],
                    train_urls=np.array([""] * len(p["features"]), dtype=object))
        params = {name: p[name].copy() for name in CAPTION_PARAMS}
        solver = CaptioningSolver(_CaptioningModel(layers, params), data, update_rule="adam",
                                  optim_config={"learning_rate": 1e-3},
                                  batch_size=case.shape[0], verbose=False, rng=0)

        def solver_step():
            solver._step()
            return dict(loss=np.asarray(solver.loss_history[-1]), **solver.model.params)
        return solver_step

    if case.kind == "embedding_backward":
        _, cache = layers.word_embedding_forward(p["x"], p["W"])

        def embedding_backward():
            return dict(dW=layers.word_embedding_backward(p["dout"], cache))
        return embedding_backward

    if case.kind == "softmax_loss":
        def softmax_loss():
            loss, dx = layers.temporal_softmax_loss(p["x"], p["y"], p["mask"])
            return dict(loss=np.asarray(loss), dx=dx)
        return softmax_loss

    if case.kind == "transformer":
        # ClassificationTransformer.loss (exactly pruned to token 0) on the Transformer layers of
        # ``layers`` (fastrnn.transformer_layers stands in for a module that has none).
        from fastrnn.classifiers.transformer import ClassificationTransformer
        if not hasattr(layers, "multi_head_attention_forward"):
            layers = importlib.import_module("fastrnn.transformer_layers")
        model = ClassificationTransformer({str(i): i for i in range(VOCAB_SIZE)},
                                          dtype=p["W1.weight"].dtype, layers=layers,
                                          **_transformer_config(case))
        model.load_state_dict({k: v for k, v in p.items() if k in model.params})

        def transformer_step():
            loss, grads = model.loss(p["inputs"], p["labels"])
            # The key biases' gradient is zero in exact arithmetic (the softmax cancels them):
            # only rounding noise, left out of the accuracy comparison.
            return dict(loss=np.asarray(loss), **{k: v for k, v in grads.items()
                                                  if not (k[0] == "k" and k.endswith(".bias"))})
        return transformer_step
    raise ValueError(f"unknown case kind {case.kind!r}")


def _torch_captioning_model(torch, case):
    """The LSTM captioning model of a ``captioning`` / ``train_step`` case in PyTorch: its
    parameters and ``loss_of(features, captions)``, CaptioningRNN.loss's masked softmax loss
    summed over time and divided by N."""
    import torch.nn.functional as F
    N, T, W, H = case.shape
    V, tdtype = VOCAB_SIZE, getattr(torch, case.dtype)
    embed = torch.nn.Embedding(V, W, dtype=tdtype)
    proj = torch.nn.Linear(CAPTION_FEATURE_DIM, H, dtype=tdtype)
    lstm = torch.nn.LSTM(W, H, batch_first=True, dtype=tdtype)
    vocab = torch.nn.Linear(H, V, dtype=tdtype)
    params = [*embed.parameters(), *proj.parameters(), *lstm.parameters(), *vocab.parameters()]

    def loss_of(features, captions):
        captions_in, captions_out = captions[:, :-1], captions[:, 1:].reshape(-1)
        mask = (captions_out != 0).to(tdtype)
        h0 = proj(features).unsqueeze(0)
        hidden, _ = lstm(embed(captions_in), (h0, torch.zeros_like(h0)))
        scores = vocab(hidden).reshape(-1, V)
        return (F.cross_entropy(scores, captions_out, reduction="none") * mask).sum() / N
    return params, loss_of


def torch_workload(case, inputs):
    """The torch counterpart of :func:`numpy_workload` (forward + all gradients), or None.

    Gradients are taken with ``torch.autograd.grad`` so nothing accumulates between calls.
    """
    import torch
    import torch.nn.functional as F

    tdtype = getattr(torch, case.dtype)
    torch.manual_seed(0)

    def tensor(name, grad=False):
        return torch.from_numpy(np.ascontiguousarray(inputs[name])).requires_grad_(grad)

    if case.kind in ("rnn", "lstm"):
        N, T, D, H = case.shape
        if case.kind == "rnn":
            module = torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True, dtype=tdtype)
        else:
            module = torch.nn.LSTM(D, H, batch_first=True, dtype=tdtype)
        x, h0, dh = tensor("x", True), tensor("h0", True).unsqueeze(0), tensor("dh")
        wrt = [x, h0, *module.parameters()]

        def sequence_step():
            state = h0 if case.kind == "rnn" else (h0, torch.zeros_like(h0))
            h, _ = module(x, state)
            return torch.autograd.grad(h, wrt, dh)
        return sequence_step

    if case.kind == "captioning":
        params, loss_of = _torch_captioning_model(torch, case)
        features = tensor("features")
        captions = torch.from_numpy(inputs["captions"].astype(np.int64))

        def training_step():
            return torch.autograd.grad(loss_of(features, captions), params)
        return training_step

    if case.kind == "train_step":
        params, loss_of = _torch_captioning_model(torch, case)
        optimizer = torch.optim.Adam(params, lr=1e-3)
        features = tensor("features")
        captions = torch.from_numpy(inputs["captions"].astype(np.int64))
        image_idxs = torch.from_numpy(inputs["image_idxs"].astype(np.int64))
        rng = np.random.default_rng(0)

        def solver_step():
            rows = torch.from_numpy(rng.choice(len(captions), case.shape[0]))  # as the solver
            loss = loss_of(features[image_idxs[rows]], captions[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach()
        return solver_step

    if case.kind == "embedding_backward":
        N, T, V, D = case.shape
        indices = torch.from_numpy(inputs["x"].astype(np.int64))
        dout = tensor("dout")

        def embedding_backward():
            # The kernel behind nn.Embedding's backward (dense gradient).
            return torch.ops.aten.embedding_dense_backward(dout, indices, V, -1, False)
        return embedding_backward

    if case.kind == "softmax_loss":
        N, T, V = case.shape
        x = tensor("x", True)
        y = torch.from_numpy(inputs["y"].astype(np.int64)).reshape(-1)
        mask = torch.from_numpy(inputs["mask"]).reshape(-1).to(tdtype)

        def softmax_loss():
            loss = (F.cross_entropy(x.reshape(-1, V), y, reduction="none") * mask).sum() / N
            return loss, torch.autograd.grad(loss, x)
        return softmax_loss

    if case.kind == "transformer":
        # The course's PyTorch module, forward over every position, BCE, all gradients.
        from .transformer import course_module
        module = course_module(torch, VOCAB_SIZE, **_transformer_config(case)).to(tdtype)
        module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                                for k, v in inputs.items() if "." in k})
        params = list(module.parameters())
        sentences = torch.from_numpy(inputs["inputs"].astype(np.int64))
        labels = torch.from_numpy(inputs["labels"]).to(tdtype)

        def transformer_step():
            loss = F.binary_cross_entropy(module(sentences)[:, 0], labels)
            return loss, torch.autograd.grad(loss, params)
        return transformer_step
    return None


