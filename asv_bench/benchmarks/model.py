"""The captioning model's training loss: ``CaptioningRNN.loss`` for an LSTM, written out with the
layer functions (affine to h0, word embedding, LSTM, temporal affine to V=1004, temporal softmax
loss, and every backward), exactly the workload of ``python -m fastrnn.bench``'s captioning row.

Size is N x T x W x H (input_dim 512, V 1004).  torch: the same model from nn.Embedding,
nn.Linear, nn.LSTM and a masked cross-entropy, gradients by ``torch.autograd.grad``.
"""
from . import common


class CaptioningLoss:
    param_names = ["impl", "size", "dtype"]
    params = [common.IMPLS, common.sizes("captioning", extra=[(100, 16, 256, 512)]),
              common.DTYPES]
    timeout = 300

    def setup(self, impl, size, dtype):
        case = common.bench.Case(f"captioning_{size}", "captioning", common.parse_size(size),
                                 dtype)
        inputs = common.bench.make_inputs(case)
        if impl == "torch":
            common.torch()
            self.step = common.bench.torch_workload(case, inputs)
        else:
            self.step = common.bench.numpy_workload(case, common.layers(impl), inputs)
        self.step()
        common.limit_threads()

    def time_loss_and_grads(self, *params):
        self.step()
