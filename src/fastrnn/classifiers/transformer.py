"""The problem set's one-layer Transformer encoder for sentence classification (CoLA), in NumPy.

The course writes this model as a PyTorch module and only its forward pass; here it has a
backward pass too, so it trains without PyTorch::

    inputs (N, T) -> embed: token + position embeddings (N, T, H)
      -> multi_head_attention: per head softmax(q k^T / sqrt(dk)) v, heads concatenated,
         attention_head_projection, LayerNorm(embeds + projection)            (N, T, H)
      -> feedforward_layer: W1, ReLU, W2, LayerNorm(h + out)                    (N, T, H)
      -> final_layer: token 0 ([CLS]) -> final_dense -> sigmoid                 (N, 1)

Exact pruning: the output reads token 0 of the last layer only, and in a one-layer model every
layer after the keys and values works position by position.  So :meth:`forward` and
:meth:`loss` compute keys and values for every token but the query, the projection, both layer
norms and the feed-forward layer for token 0 only: the same function, about a tenth of the
arithmetic.  :meth:`multi_head_attention` and :meth:`feedforward_layer` called on their own
return every position, as the course's checks expect.

Parameters are named as the PyTorch module's ``state_dict`` keys and stored in its (out, in)
layout, so :meth:`load_state_dict` takes the course module's weights as they are.
"""
import numpy as np

from fastrnn import reference
from fastrnn._validate import check_indices

__all__ = ["ClassificationTransformer"]


class ClassificationTransformer:
    """A one-layer Transformer encoder that scores sentences (probability of label 1).

    Parameters
    ----------
    word_to_ix : dict
        Vocabulary, word -> index in [0, V).
    hidden_dim : int
        H, the width of embeddings and of the layer's outputs.
    num_heads : int
        Attention heads (the course uses 2; any number >= 1 works).
    dim_feedforward : int
        Width of the feed-forward layer's hidden ReLU layer.
    dim_k, dim_v, dim_q : int
        Per-head widths of keys, values and queries (dim_q must equal dim_k).
    max_length : int
        Positions of the position embedding: the longest input.
    dtype : numpy dtype
        Of every parameter: float32 to train, float64 to check gradients.
    seed : int or numpy.random.Generator, optional
        Source of the initial weights (default 0), drawn in ``state_dict`` order from PyTorch's
        default distributions: embeddings N(0, 1); linear weights and biases
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)); layer-norm gains 1 and biases 0.
    pad_index : int, optional
        When given, tokens equal to it are left out of the attention (as keys).  Off by
        default, as in the course.
    layers : module, optional
        The layer functions: :mod:`fastrnn.transformer_layers` (default) or
        :mod:`fastrnn.reference`.

    Attributes
    ----------
    params : dict
        name -> array, keyed and shaped like the PyTorch module's ``state_dict``.
    """

    def __init__(self, word_to_ix, hidden_dim=128, num_heads=2, dim_feedforward=2048, dim_k=96,
                 dim_v=96, dim_q=96, max_length=43, dtype=np.float32, *, seed=0, pad_index=None,
                 layers=None):
        for name, value in (("hidden_dim", hidden_dim), ("num_heads", num_heads),
                            ("dim_feedforward", dim_feedforward), ("dim_k", dim_k),
                            ("dim_v", dim_v), ("dim_q", dim_q), ("max_length", max_length)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if dim_q != dim_k:
            raise ValueError(f"dim_q must equal dim_k (queries meet keys in a dot product), got "
                             f"dim_q={dim_q}, dim_k={dim_k}")
        if len(word_to_ix) < 1:
            raise ValueError("word_to_ix is empty")
        self.word_to_ix = word_to_ix
        self.ix_to_word = {i: w for w, i in word_to_ix.items()}
        self.vocab_size = len(word_to_ix)
        self.hidden_dim = int(hidden_dim)
        self.num_heads = int(num_heads)
        self.dim_feedforward = int(dim_feedforward)
        self.dim_k, self.dim_v, self.dim_q = int(dim_k), int(dim_v), int(dim_q)
        self.max_length = int(max_length)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        if pad_index is not None and not 0 <= pad_index < self.vocab_size:
            raise ValueError(f"pad_index must be in [0, {self.vocab_size}), got {pad_index}")
        self.pad_index = None if pad_index is None else int(pad_index)
        if layers is None:   # imported here: a model on the reference layers never loads numba
            from fastrnn import transformer_layers as layers
        self.layers = layers
        self.params = self._initial_params(np.random.default_rng(seed))

    def config(self):
        """The keyword arguments that rebuild this model with :func:`fastrnn.classifiers.build`
        (besides the vocabulary): what a checkpoint records."""
        return {"hidden_dim": self.hidden_dim, "num_heads": self.num_heads,
                "dim_feedforward": self.dim_feedforward, "dim_k": self.dim_k,
                "dim_v": self.dim_v, "dim_q": self.dim_q, "max_length": self.max_length,
                "dtype": self.dtype.name, "pad_index": self.pad_index}

    # ------------------------------------------------------------------ parameters

    def _shapes(self):
        """(name, shape, kind) in the PyTorch module's registration (state_dict) order."""
        H, F = self.hidden_dim, self.dim_feedforward
        shapes = [("token_embeddings", (self.vocab_size, H), "embedding"),
                  ("position_embeddings", (self.max_length, H), "embedding")]
        for i in range(1, self.num_heads + 1):
            shapes += [(f"k{i}", (self.dim_k, H), "linear"), (f"v{i}", (self.dim_v, H), "linear"),
                       (f"q{i}", (self.dim_q, H), "linear")]
        shapes += [("attention_head_projection", (H, self.dim_v * self.num_heads), "linear"),
                   ("norm_mh", (H,), "layernorm"),
                   ("W1", (F, H), "linear"), ("W2", (H, F), "linear"),
                   ("norm_ffn", (H,), "layernorm"), ("final_dense", (1, H), "linear")]
        return shapes

    def _initial_params(self, rng):
        params = {}
        for name, shape, kind in self._shapes():
            if kind == "embedding":
                params[f"{name}.weight"] = rng.standard_normal(shape)
            elif kind == "linear":
                bound = 1 / np.sqrt(shape[1])
                params[f"{name}.weight"] = rng.uniform(-bound, bound, shape)
                params[f"{name}.bias"] = rng.uniform(-bound, bound, shape[0])
            else:
                params[f"{name}.weight"] = np.ones(shape)
                params[f"{name}.bias"] = np.zeros(shape)
        return {k: v.astype(self.dtype) for k, v in params.items()}

    def state_dict(self):
        """Copies of the parameters, keyed like the PyTorch module's ``state_dict``."""
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state_dict):
        """Set every parameter from a mapping of name -> array.

        Values may be NumPy arrays or anything with ``.numpy()`` or ``__array__`` (PyTorch
        tensors, without importing torch); they are copied and cast to the model's dtype.
        KeyError names missing or unexpected keys, ValueError a shape that does not fit.
        """
        missing = [k for k in self.params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self.params]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys "
                           f"{unexpected}")
        loaded = {}
        for name, current in self.params.items():
            value = state_dict[name]
            if hasattr(value, "detach"):   # a tensor that requires grad refuses .numpy()
                value = value.detach()
            if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
                value = value.numpy()
            value = np.array(value, dtype=self.dtype, order="C", copy=True)
            if value.shape != current.shape:
                raise ValueError(f"load_state_dict: {name} must have shape {current.shape}, "
                                 f"got {value.shape}")
            loaded[name] = value
        self.params = loaded

    def _attention_weights(self, p):
        """The heads' q, k, v maps as (H, heads * d) matrices and biases, heads in order."""
        heads = range(1, self.num_heads + 1)

        def stacked(kind):
            weight = np.concatenate([p[f"{kind}{i}.weight"] for i in heads], axis=0)
            bias = np.concatenate([p[f"{kind}{i}.bias"] for i in heads])
            return weight.T, bias
        return (*stacked("q"), *stacked("k"), *stacked("v"))

    # ------------------------------------------------------------------ the course's methods

    def _check_inputs(self, inputs):
        inputs = np.asarray(inputs)
        if inputs.ndim != 2:
            raise ValueError(f"inputs must have shape (N, T), got {inputs.shape}")
        if inputs.shape[1] > self.max_length:
            raise ValueError(f"inputs has T={inputs.shape[1]} tokens, more than "
                             f"max_length={self.max_length}")
        if inputs.shape[1] < 1:
            raise ValueError("inputs must hold at least one token per sentence ([CLS] first)")
        return check_indices("inputs", inputs, self.vocab_size)

    def _key_mask(self, inputs):
        return None if self.pad_index is None else inputs != self.pad_index

    def embed(self, inputs):
        """inputs int (N, T) -> token + position embeddings (N, T, H); inputs are not modified."""
        p = self.params
        out, _ = self.layers.positional_embedding_forward(
            self._check_inputs(inputs), p["token_embeddings.weight"],
            p["position_embeddings.weight"])
        return out

    def multi_head_attention(self, inputs):
        """(N, T, H) -> LayerNorm(inputs + projection of the concatenated heads) (N, T, H)."""
        out, _ = self._attention_block(np.asarray(inputs), None, None)
        return out

    def feedforward_layer(self, inputs):
        """(N, T, H) -> LayerNorm(inputs + W2 relu(W1 inputs)) (N, T, H)."""
        out, _ = self._feedforward_block(np.asarray(inputs))
        return out

    def final_layer(self, inputs):
        """(N, T, H) -> sigmoid(final_dense(inputs[:, 0])) (N, 1) probabilities."""
        logits, _ = self._final_block(np.asarray(inputs))
        return reference.sigmoid(logits)

    def forward(self, inputs):
        """inputs int (N, T) -> (N, 1) probabilities, through the pruned computation."""
        logits, _ = self._logits(inputs)
        return reference.sigmoid(logits)

    def attention_weights(self, inputs):
        """inputs int (N, T) -> (N, heads, T, T) attention probabilities of every position's
        query over the keys (rows sum to 1; padding excluded when ``pad_index`` is set)."""
        inputs = self._check_inputs(inputs)
        embeds, p = self.embed(inputs), self.params
        mask = self._key_mask(inputs)
        heads = []
        for i in range(1, self.num_heads + 1):   # plain NumPy: for display, not for speed
            q = embeds @ p[f"q{i}.weight"].T + p[f"q{i}.bias"]
            k = embeds @ p[f"k{i}.weight"].T + p[f"k{i}.bias"]
            scores = (q @ k.transpose(0, 2, 1)).astype(np.float64) / np.sqrt(self.dim_k)
            if mask is not None:
                scores = np.where(mask[:, None, :], scores, -np.inf)
            scores -= scores.max(axis=-1, keepdims=True)
            weights = np.exp(scores)
            heads.append(weights / weights.sum(axis=-1, keepdims=True))
        return np.stack(heads, axis=1).astype(self.dtype)

    # ------------------------------------------------------------------ blocks

    def _attention_block(self, embeds, key_mask, num_queries):
        L, p = self.layers, self.params
        Wq, bq, Wk, bk, Wv, bv = self._attention_weights(p)
        heads, att_cache = L.multi_head_attention_forward(
            embeds, Wq, bq, Wk, bk, Wv, bv, self.num_heads, key_mask=key_mask,
            num_queries=num_queries)
        proj, proj_cache = L.linear_forward(heads, p["attention_head_projection.weight"].T,
                                            p["attention_head_projection.bias"])
        residual = embeds if num_queries is None else embeds[:, :num_queries]
        out, norm_cache = L.layernorm_forward(proj, p["norm_mh.weight"], p["norm_mh.bias"],
                                              residual=residual)
        return out, (att_cache, proj_cache, norm_cache)

    def _feedforward_block(self, h):
        L, p = self.layers, self.params
        hidden, ff1_cache = L.affine_relu_forward(h, p["W1.weight"].T, p["W1.bias"])
        ff, ff2_cache = L.linear_forward(hidden, p["W2.weight"].T, p["W2.bias"])
        out, norm_cache = L.layernorm_forward(ff, p["norm_ffn.weight"], p["norm_ffn.bias"],
                                              residual=h)
        return out, (ff1_cache, ff2_cache, norm_cache)

    def _final_block(self, h):
        p = self.params
        return self.layers.linear_forward(h[:, 0], p["final_dense.weight"].T,
                                          p["final_dense.bias"])

    def _logits(self, inputs):
        """Pruned forward: (N, 1) logits and the caches of every layer."""
        inputs = self._check_inputs(inputs)
        p = self.params
        embeds, emb_cache = self.layers.positional_embedding_forward(
            inputs, p["token_embeddings.weight"], p["position_embeddings.weight"])
        h1, att_caches = self._attention_block(embeds, self._key_mask(inputs), 1)
        h2, ff_caches = self._feedforward_block(h1)
        logits, final_cache = self._final_block(h2)
        return logits, (emb_cache, att_caches, ff_caches, final_cache)

    def predict(self, inputs):
        """(N,) int64 labels: 1 where the probability of label 1 is at least 0.5."""
        logits, _ = self._logits(inputs)
        return (logits[:, 0] >= 0).astype(np.int64)

    # ------------------------------------------------------------------ training

    def loss(self, inputs, labels=None):
        """Probabilities at test time; with labels, the mean binary cross-entropy and gradients.

        Parameters
        ----------
        inputs : int (N, T), T <= max_length, [CLS] first
        labels : (N,) 0/1 labels, optional

        Returns
        -------
        Without labels: (N, 1) probabilities.  With labels: ``(loss, grads)``, grads keyed and
        shaped like ``params``.
        """
        logits, caches = self._logits(inputs)
        if labels is None:
            return reference.sigmoid(logits)
        L, p = self.layers, self.params
        labels = np.asarray(labels)
        if labels.shape not in ((logits.shape[0],), logits.shape):
            raise ValueError(f"labels must have shape (N={logits.shape[0]},), got {labels.shape}")
        loss, dlogits = L.sigmoid_bce_loss(logits, labels)
        emb_cache, (att_cache, proj_cache, norm_mh_cache), \
            (ff1_cache, ff2_cache, norm_ffn_cache), final_cache = caches

        grads = {}
        dh2_0, dW, grads["final_dense.bias"] = L.linear_backward(dlogits, final_cache)
        grads["final_dense.weight"] = dW.T
        dff, grads["norm_ffn.weight"], grads["norm_ffn.bias"] = L.layernorm_backward(
            dh2_0[:, None, :], norm_ffn_cache)
        dhidden, dW, grads["W2.bias"] = L.linear_backward(dff, ff2_cache)
        grads["W2.weight"] = dW.T
        dh1, dW, grads["W1.bias"] = L.affine_relu_backward(dhidden, ff1_cache)
        grads["W1.weight"] = dW.T
        dh1 = dh1 + dff  # the residual path around the feed-forward layer
        dproj, grads["norm_mh.weight"], grads["norm_mh.bias"] = L.layernorm_backward(
            dh1, norm_mh_cache)
        dheads, dW, grads["attention_head_projection.bias"] = L.linear_backward(dproj, proj_cache)
        grads["attention_head_projection.weight"] = dW.T
        dembeds, dWq, dbq, dWk, dbk, dWv, dbv = L.multi_head_attention_backward(dheads, att_cache)
        dembeds[:, :1] += dproj  # the residual path around the attention
        grads["token_embeddings.weight"], grads["position_embeddings.weight"] = \
            L.positional_embedding_backward(dembeds, emb_cache)
        for kind, dW, db, d in (("q", dWq, dbq, self.dim_q), ("k", dWk, dbk, self.dim_k),
                                ("v", dWv, dbv, self.dim_v)):
            for i in range(self.num_heads):
                grads[f"{kind}{i + 1}.weight"] = dW[:, i * d:(i + 1) * d].T
                grads[f"{kind}{i + 1}.bias"] = db[i * d:(i + 1) * d]
        return loss, {k: np.ascontiguousarray(grads[k]) for k in p}
