"""Image captioning with a vanilla RNN or an LSTM, as the classic ``cs231n.classifiers.rnn``.

The model projects an image feature vector to the initial hidden state, embeds the caption's
words, runs the recurrent layer and scores every vocabulary word at every step::

    features (N, D) -> affine -> h0 (N, H)
    captions_in (N, T) -> embedding -> (N, T, W) -> rnn/lstm -> (N, T, H)
        -> temporal affine -> scores (N, T, V) -> temporal softmax loss against captions_out

The layer functions are looked up on ``self.layers``, a module with the layer API of the
contract: :mod:`fastrnn.rnn_layers` by default, or :mod:`fastrnn.reference` (the plain NumPy
yardstick) with ``layers=fastrnn.reference``.
"""
import numbers
from collections.abc import Mapping

import numpy as np

from fastrnn import rnn_layers
from fastrnn._limits import check_count, check_fits_in_memory

__all__ = ["CaptioningRNN"]

_DIM_MUL = {"rnn": 1, "lstm": 4}


def _check_vocabulary(word_to_idx):
    """ValueError/TypeError naming ``word_to_idx`` unless its indices are unique integers >= 0
    and its special tokens (<NULL>, and <START>/<END> when present) lie in [0, V).

    The indices are rows of W_embed and columns of W_vocab (V = len(word_to_idx)): a token
    out of range would read past them (or, negative, wrap around to the last row silently),
    and two words on one index would make ``idx_to_word`` lose one.  Ordinary words beyond V
    are allowed, as in the classic code: the course notebook's own toy vocabulary
    ``{'<NULL>': 0, 'cat': 2, 'dog': 3}`` has V = 3 (captions are range-checked by the layers).
    """
    if not isinstance(word_to_idx, Mapping):
        raise TypeError(f"word_to_idx must be a dict of word -> index, got "
                        f"{type(word_to_idx).__name__}")
    if "<NULL>" not in word_to_idx:
        raise ValueError("word_to_idx must contain the '<NULL>' token")
    vocab_size = len(word_to_idx)
    seen = {}
    for word, index in word_to_idx.items():
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral):
            raise TypeError(f"word_to_idx[{word!r}] must be an integer index, got {index!r}")
        if index < 0:
            raise ValueError(f"word_to_idx[{word!r}] = {index} is negative")
        if index in seen:
            raise ValueError(f"word_to_idx maps both {seen[index]!r} and {word!r} to index {index}")
        seen[index] = word
    for token in ("<NULL>", "<START>", "<END>"):
        if token in word_to_idx and word_to_idx[token] >= vocab_size:
            raise ValueError(f"word_to_idx[{token!r}] = {word_to_idx[token]} is outside [0, "
                             f"{vocab_size}) (the vocabulary has {vocab_size} words)")


def _standard_normal_draws(rng):
    """``randn(*shape)`` drawing from ``rng``, or from the global stream when it is None."""
    if rng is None:
        return np.random.randn  # the classic stream, so np.random.seed reproduces the classic init
    generator = np.random.default_rng(rng)
    return lambda *shape: generator.standard_normal(shape)


class CaptioningRNN:
    """An RNN/LSTM captioning model; a drop-in for the classic ``CaptioningRNN``.

    Parameters
    ----------
    word_to_idx : dict
        Vocabulary: word -> index (unique integers >= 0; the special tokens in [0, V), V the
        number of words; errors name the entry).  Must contain '<NULL>'; '<START>' and '<END>'
        are needed by :meth:`sample`.
    input_dim : int
        D, the dimension of an image feature vector.
    wordvec_dim : int
        W, the dimension of a word vector.
    hidden_dim : int
        H, the dimension of the recurrent hidden state.
    cell_type : {'rnn', 'lstm'}
    dtype : numpy dtype
        Of every parameter: float32 to train, float64 to check gradients (no other dtype).
    rng : numpy.random.Generator or int, optional
        Source of the initial weights.  Default: the global ``np.random`` stream, drawn in the
        classic order (W_embed, W_proj, Wx, Wh, W_vocab), so a notebook that calls
        ``np.random.seed`` first gets the classic weights and the classic first losses.
    layers : module, optional
        Where the layer functions come from; default :mod:`fastrnn.rnn_layers`.

    Attributes
    ----------
    params : dict
        W_embed (V, W), W_proj (D, H), b_proj (H,), Wx (W, kH), Wh (H, kH), b (kH,),
        W_vocab (H, V), b_vocab (V,), with k = 4 for an LSTM and 1 for an RNN.
    """

    def __init__(self, word_to_idx, input_dim=512, wordvec_dim=128, hidden_dim=128,
                 cell_type="rnn", dtype=np.float32, *, rng=None, layers=None):
        if cell_type not in _DIM_MUL:
            raise ValueError(f"Invalid cell_type {cell_type!r}: expected 'rnn' or 'lstm'")
        _check_vocabulary(word_to_idx)
        input_dim = check_count("input_dim", input_dim)
        wordvec_dim = check_count("wordvec_dim", wordvec_dim)
        hidden_dim = check_count("hidden_dim", hidden_dim)
        try:
            dtype_name = np.dtype(dtype).name
        except TypeError:
            dtype_name = repr(dtype)
        if dtype_name not in ("float32", "float64"):
            # Layers compute in float32 or float64; an int dtype would truncate every initial
            # weight (randn / 100) to 0.
            raise TypeError(f"dtype must be float32 or float64, got {dtype_name}")
        vocab_size = len(word_to_idx)
        hidden_mul = _DIM_MUL[cell_type] * hidden_dim
        num_params = (vocab_size * wordvec_dim + (input_dim + 1) * hidden_dim
                      + (wordvec_dim + hidden_dim + 1) * hidden_mul + (hidden_dim + 1) * vocab_size)
        # The initial draws are float64 whatever the dtype.
        check_fits_in_memory(8 * num_params, f"a CaptioningRNN with input_dim={input_dim}, "
                             f"wordvec_dim={wordvec_dim}, hidden_dim={hidden_dim} and "
                             f"{vocab_size} words ({num_params:,} parameters)")
        self.cell_type = cell_type
        self.dtype = dtype
        self.word_to_idx = word_to_idx
        self.idx_to_word = {i: w for w, i in word_to_idx.items()}
        self.layers = rnn_layers if layers is None else layers
        self._null = word_to_idx["<NULL>"]
        self._start = word_to_idx.get("<START>", None)
        self._end = word_to_idx.get("<END>", None)

        randn = _standard_normal_draws(rng)
        # Insertion order and draw order are both the classic ones.
        params = {}
        params["W_embed"] = randn(vocab_size, wordvec_dim) / 100
        params["W_proj"] = randn(input_dim, hidden_dim) / np.sqrt(input_dim)
        params["b_proj"] = np.zeros(hidden_dim)
        params["Wx"] = randn(wordvec_dim, hidden_mul) / np.sqrt(wordvec_dim)
        params["Wh"] = randn(hidden_dim, hidden_mul) / np.sqrt(hidden_dim)
        params["b"] = np.zeros(hidden_mul)
        params["W_vocab"] = randn(hidden_dim, vocab_size) / np.sqrt(hidden_dim)
        params["b_vocab"] = np.zeros(vocab_size)
        self.params = {k: v.astype(dtype) for k, v in params.items()}

    def config(self):
        """The keyword arguments that rebuild this model with :func:`fastrnn.classifiers.build`
        (besides the vocabulary): what a checkpoint records."""
        return {"input_dim": self.params["W_proj"].shape[0],
                "wordvec_dim": self.params["W_embed"].shape[1],
                "hidden_dim": self.params["Wh"].shape[0], "cell_type": self.cell_type,
                "dtype": np.dtype(self.dtype).name}

    def loss(self, features, captions):
        """Training loss and gradients for one minibatch.

        Parameters
        ----------
        features : (N, D) image features
        captions : int (N, T + 1) word indices; the model reads captions[:, :-1] and predicts
            captions[:, 1:], ignoring targets equal to <NULL>.

        Returns
        -------
        loss : scalar, summed over time steps and averaged over the batch
        grads : dict of arrays keyed and shaped like ``self.params``
        """
        L = self.layers
        p = self.params  # read afresh on every call: gradient checks perturb it in place
        captions = np.asarray(captions)
        if captions.ndim != 2 or captions.shape[1] < 2:
            raise ValueError(f"captions must have shape (N, T + 1) with T >= 1, got {captions.shape}")
        features = self._check_features(features)
        if features.shape[0] != captions.shape[0]:
            raise ValueError(f"features has {features.shape[0]} rows but captions has "
                             f"{captions.shape[0]}: one caption per image feature row")
        captions_in = captions[:, :-1]
        captions_out = captions[:, 1:]
        mask = captions_out != self._null

        h0, h0_cache = L.affine_forward(features, p["W_proj"], p["b_proj"])
        words, embed_cache = L.word_embedding_forward(captions_in, p["W_embed"])
        if self.cell_type == "rnn":
            hidden, rnn_cache = L.rnn_forward(words, h0, p["Wx"], p["Wh"], p["b"])
        else:
            hidden, rnn_cache = L.lstm_forward(words, h0, p["Wx"], p["Wh"], p["b"])
        scores, scores_cache = L.temporal_affine_forward(hidden, p["W_vocab"], p["b_vocab"])
        loss, dscores = L.temporal_softmax_loss(scores, captions_out, mask)

        grads = {}
        dhidden, grads["W_vocab"], grads["b_vocab"] = L.temporal_affine_backward(dscores, scores_cache)
        if self.cell_type == "rnn":
            dwords, dh0, grads["Wx"], grads["Wh"], grads["b"] = L.rnn_backward(dhidden, rnn_cache)
        else:
            dwords, dh0, grads["Wx"], grads["Wh"], grads["b"] = L.lstm_backward(dhidden, rnn_cache)
        grads["W_embed"] = L.word_embedding_backward(dwords, embed_cache)
        _, grads["W_proj"], grads["b_proj"] = L.affine_backward(dh0, h0_cache)
        return loss, {k: grads[k] for k in p}

    def _check_features(self, features):
        """features as an (N, D) array, D the model's input_dim, or ValueError naming it (the
        layers would blame their own argument, ``x`` or ``w``, for the caller's mistake)."""
        features = np.asarray(features)
        input_dim = self.params["W_proj"].shape[0]
        if features.ndim != 2 or features.shape[1] != input_dim:
            raise ValueError(f"features must have shape (N, D={input_dim}) (D: the model's "
                             f"input_dim), got {features.shape}")
        return features

    def _initial_state(self, features):
        """features (N, D) -> h0 (N, H) and c0 (N, H) zeros (c0 unused by the RNN)."""
        h0, _ = self.layers.affine_forward(features, self.params["W_proj"], self.params["b_proj"])
        return h0, np.zeros_like(h0)

    def _step(self, words, prev_h, prev_c):
        """One step from the previous words, int (B,) -> (next_h, next_c, scores (B, V))."""
        L = self.layers
        p = self.params
        embedded = p["W_embed"][words]
        if self.cell_type == "rnn":
            next_h, _ = L.rnn_step_forward(embedded, prev_h, p["Wx"], p["Wh"], p["b"])
            next_c = prev_c
        else:
            next_h, next_c, _ = L.lstm_step_forward(embedded, prev_h, prev_c, p["Wx"], p["Wh"], p["b"])
        scores, _ = L.affine_forward(next_h, p["W_vocab"], p["b_vocab"])
        return next_h, next_c, scores

    def sample(self, features, max_length=30, beam_size=None):
        """Generate captions for images.

        Parameters
        ----------
        features : (N, D) image features
        max_length : int, the number of words generated per image
        beam_size : int, optional
            None (default): classic greedy decoding, which picks the most likely word at every
            step and keeps going after <END> for all ``max_length`` steps.  An int k >= 1: beam
            search keeping the k most likely partial captions (by summed log-probability); a
            caption ends at <END> and the rest of its row is <NULL>.  k = 1 gives the greedy
            caption up to and including its first <END>.

        Returns
        -------
        captions : int32 (N, max_length), prefilled with <NULL>; column 0 holds the first
            generated word (not <START>).
        """
        if self._start is None:
            raise ValueError("sample needs a '<START>' token in word_to_idx")
        if int(max_length) != max_length or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        features = self._check_features(features)
        if beam_size is not None:
            if int(beam_size) != beam_size or beam_size < 1:
                raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
            return self._beam_search(features, int(max_length), int(beam_size))

        N = features.shape[0]
        captions = np.full((N, max_length), self._null, dtype=np.int32)
        h, c = self._initial_state(features)
        words = np.full(N, self._start, dtype=np.int64)
        for t in range(max_length):
            h, c, scores = self._step(words, h, c)
            words = np.argmax(scores, axis=1)
            captions[:, t] = words
        return captions

    def _beam_search(self, features, max_length, beam_size):
        """Beam search, one image at a time, the beams of an image as one batch."""
        captions = np.full((features.shape[0], max_length), self._null, dtype=np.int32)
        for n in range(features.shape[0]):
            best = self._beam_search_one(features[n:n + 1], max_length, beam_size)
            captions[n, :len(best)] = best
        return captions

    def _beam_search_one(self, feature, max_length, beam_size):
        """feature (1, D) -> the best word list (ending in <END> if one was reached)."""
        h, c = self._initial_state(feature)
        beams = [[]]                          # word lists of the live beams
        beam_scores = np.zeros(1)             # summed log-probabilities, float64
        finished = []                         # (score, words) of captions that reached <END>
        words = np.array([self._start])
        for _ in range(max_length):
            h, c, scores = self._step(words, h, c)
            scores = scores.astype(np.float64)  # float64: ties stay ties only when exact
            log_probs = scores - scores.max(axis=1, keepdims=True)
            log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
            candidates = (beam_scores[:, None] + log_probs).ravel()
            # A stable sort picks the lowest index among equal scores, as np.argmax does.
            order = np.argsort(-candidates, kind="stable")[:beam_size - len(finished)]
            vocab_size = log_probs.shape[1]
            keep = []
            for flat in order:
                beam, word = divmod(int(flat), vocab_size)
                if word == self._end:
                    finished.append((candidates[flat], beams[beam] + [word]))
                else:
                    keep.append((beam, word))
            if len(finished) >= beam_size or not keep:
                break
            rows = np.array([beam for beam, _ in keep])
            beams = [beams[beam] + [word] for beam, word in keep]
            beam_scores = candidates[[beam * vocab_size + word for beam, word in keep]]
            words = np.array([word for _, word in keep])
            h, c = h[rows], c[rows]
        else:
            finished.extend(zip(beam_scores, beams))
        # max() keeps the first of equal scores: the earliest-found caption.
        return max(finished, key=lambda item: item[0])[1]
