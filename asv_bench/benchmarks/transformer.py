"""The problem set's ClassificationTransformer: one training step (loss + every gradient) of the
course's configuration (hidden 128, 2 heads, feed-forward 2048, 96-wide heads, T = 43), the
workload of ``python -m fastrnn.bench.transformer``.

impl: ``reference`` (the model on the plain NumPy layers of :mod:`fastrnn.reference`),
``fastrnn`` (:mod:`fastrnn.transformer_layers`), ``torch`` (the course's PyTorch module,
forward over all positions + ``backward()``) and ``torch_pruned`` (the same module computed
for token 0 only, as fastrnn does).  The full-sequence layers (all T positions, the course's
``multi_head_attention`` + ``feedforward_layer``) are timed separately, forward only.
"""
from . import common

SIZES = [32, 128]


def _step(impl, n, threads):
    from fastrnn.bench import transformer as bench_transformer
    if impl.startswith("torch"):
        common.torch()   # NotImplementedError (skipped) without torch
    return bench_transformer._step_function(impl, n, threads)


class TransformerLoss:
    param_names = ["impl", "N"]
    params = [common.IMPLS + ["torch_pruned"], SIZES]
    timeout = 300

    def setup(self, impl, n):
        self.step = _step(impl, n, common.THREADS)
        self.step()
        common.limit_threads()

    def time_loss_and_grads(self, impl, n):
        self.step()


class TransformerFullSequence:
    """Every position through attention and feed-forward (no pruning), forward only."""
    param_names = ["impl", "N"]
    params = [common.IMPLS, SIZES]
    timeout = 300

    def setup(self, impl, n):
        from fastrnn.bench import transformer as bench_transformer
        if impl == "torch":
            common.torch()   # NotImplementedError (skipped) without torch
        self.forward = bench_transformer._layers_function(impl, n, common.THREADS)
        self.forward()
        common.limit_threads()

    def time_attention_and_feedforward(self, impl, n):
        self.forward()
