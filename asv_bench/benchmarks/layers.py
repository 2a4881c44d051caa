"""Word embedding, temporal affine and temporal softmax loss: reference vs fastrnn vs torch.

One call per ``time_*`` body; ``setup`` builds inputs and the forward cache and calls everything
once (compilation).  Sizes: the speed issue's cases (``fastrnn.bench.CASES``), the captioning
shapes they imply, and a tiny shape where call overhead dominates.
"""
from . import common

V = common.bench.VOCAB_SIZE


class WordEmbedding(common.ForwardBackward):
    """``word_embedding_forward`` / ``word_embedding_backward``; size is N x T x V x D.

    torch: ``F.embedding`` and the kernel behind its backward, ``aten.embedding_dense_backward``.
    """

    param_names = ["impl", "size", "dtype"]
    params = [common.IMPLS, common.sizes("embedding_backward", extra=[(2, 4, 5, 3),
                                                                      (100, 16, V, 256)]),
              common.DTYPES]
    timeout = 300

    def setup(self, impl, size, dtype):
        N, T, vocab, D = common.parse_size(size)
        inputs = common.Inputs(dtype)
        x, W, dout = inputs.integers(vocab, N, T), inputs.randn(vocab, D), inputs.randn(N, T, D)
        if impl == "torch":
            torch = common.torch()
            indices = torch.from_numpy(x.astype("int64"))
            W_t, dout_t = common.torch_tensor(torch, W), common.torch_tensor(torch, dout)
            self.forward = lambda: torch.nn.functional.embedding(indices, W_t)
            self.backward = lambda: torch.ops.aten.embedding_dense_backward(
                dout_t, indices, vocab, -1, False)
        else:
            layers = common.layers(impl)
            self.forward = lambda: layers.word_embedding_forward(x, W)
            cache = self.forward()[1]
            self.backward = lambda: layers.word_embedding_backward(dout, cache)
        self.warm_up()


class TemporalAffine(common.ForwardBackward):
    """``temporal_affine_forward`` / ``temporal_affine_backward``; size is N x T x D x M.

    torch: ``F.linear`` with the weight in torch's (M, D) layout; backward by autograd.
    """

    param_names = ["impl", "size", "dtype"]
    params = [common.IMPLS,
              common.sizes(None, extra=[(2, 3, 4, 5), (25, 16, 512, V), (100, 16, 512, V)]),
              common.DTYPES]
    timeout = 300

    def setup(self, impl, size, dtype):
        N, T, D, M = common.parse_size(size)
        inputs = common.Inputs(dtype)
        x, w, b, dout = (inputs.randn(N, T, D), inputs.weight(D, M), inputs.randn(M),
                         inputs.randn(N, T, M))
        if impl == "torch":
            torch = common.torch()
            x_t = common.torch_tensor(torch, x, True)
            w_t = common.torch_tensor(torch, w.T, True)
            b_t = common.torch_tensor(torch, b, True)
            dout_t = common.torch_tensor(torch, dout)
            self.forward = lambda: torch.nn.functional.linear(x_t, w_t, b_t)
            out = self.forward()
            self.backward = lambda: torch.autograd.grad(out, [x_t, w_t, b_t], dout_t,
                                                        retain_graph=True)
        else:
            layers = common.layers(impl)
            self.forward = lambda: layers.temporal_affine_forward(x, w, b)
            cache = self.forward()[1]
            self.backward = lambda: layers.temporal_affine_backward(dout, cache)
        self.warm_up()


class TemporalSoftmaxLoss:
    """``temporal_softmax_loss`` (loss and dx in one call); size is N x T x V.

    torch: masked ``F.cross_entropy`` summed and divided by N, plus its gradient.
    """

    param_names = ["impl", "size", "dtype"]
    params = [common.IMPLS, common.sizes("softmax_loss", extra=[(3, 4, 5), (100, 16, V)]),
              common.DTYPES]
    timeout = 300

    def setup(self, impl, size, dtype):
        N, T, vocab = common.parse_size(size)
        inputs = common.Inputs(dtype)
        x, y = inputs.randn(N, T, vocab, scale=2.0), inputs.integers(vocab, N, T)
        mask = inputs.rng.random((N, T)) > 0.2
        if impl == "torch":
            torch = common.torch()
            x_t = common.torch_tensor(torch, x.reshape(N * T, vocab), True)
            y_t = torch.from_numpy(y.reshape(-1).astype("int64"))
            mask_t = torch.from_numpy(mask.reshape(-1)).to(x_t.dtype)

            def loss_and_grad():
                losses = torch.nn.functional.cross_entropy(x_t, y_t, reduction="none")
                loss = (losses * mask_t).sum() / N
                return loss, torch.autograd.grad(loss, x_t)
            self.loss = loss_and_grad
        else:
            layers = common.layers(impl)
            self.loss = lambda: layers.temporal_softmax_loss(x, y, mask)
        self.loss()
        common.limit_threads()

    def time_loss(self, *params):
        self.loss()
