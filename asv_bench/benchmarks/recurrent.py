"""RNN and LSTM layers, step and sequence: reference vs fastrnn vs torch, forward and backward.

Every ``time_*`` body is one call.  ``setup`` builds the inputs, makes the forward cache the
backward reads, and calls both once so that Numba compiles (or loads its on-disk cache) outside
the timed region; compile latency has its own benchmarks in ``startup.py``.  asv runs each
parameter combination in a fresh process (``launch_method: spawn``), so torch and fastrnn never
share a timed process.

Torch counterparts: ``nn.RNNCell`` / ``nn.LSTMCell`` for the steps, ``nn.RNN(nonlinearity='tanh')``
/ ``nn.LSTM`` for sequences; their backward is ``torch.autograd.grad`` with ``retain_graph=True``
on a graph built in ``setup``, giving the same gradients as the fastrnn backward (inputs,
initial state, weights).
"""
from . import common


class _Recurrent(common.ForwardBackward):
    """Shared machinery; subclasses set ``cell`` ('rnn' / 'lstm') and ``sequence``."""

    cell = "rnn"
    sequence = True
    param_names = ["impl", "size", "dtype"]
    timeout = 300

    def setup(self, impl, size, dtype):
        inputs = common.Inputs(dtype)
        shape = common.parse_size(size)
        if self.sequence:
            N, T, D, H = shape
            x, dout_shape = inputs.randn(N, T, D), (N, T, H)
        else:
            N, D, H = shape
            x, dout_shape = inputs.randn(N, D), (N, H)
        gates = 4 * H if self.cell == "lstm" else H
        self.x, self.h0 = x, inputs.randn(N, H, scale=0.5)
        self.c0 = inputs.randn(N, H, scale=0.5)    # used by the LSTM step only
        self.Wx, self.Wh = inputs.weight(D, gates), inputs.weight(H, gates)
        self.b = inputs.randn(gates, scale=0.1)
        self.dout, self.dnext_c = inputs.randn(*dout_shape), inputs.randn(N, H)
        if impl == "torch":
            self._setup_torch()
        else:
            self._setup_numpy(common.layers(impl))
        self.warm_up()

    def _setup_numpy(self, layers):
        step = "_step" if not self.sequence else ""
        forward = getattr(layers, f"{self.cell}{step}_forward")
        backward = getattr(layers, f"{self.cell}{step}_backward")
        if self.cell == "lstm" and not self.sequence:
            args = (self.x, self.h0, self.c0, self.Wx, self.Wh, self.b)
        else:
            args = (self.x, self.h0, self.Wx, self.Wh, self.b)
        self.owned = list(args)
        self.forward = lambda: forward(*args)
        cache = self.forward()[-1]
        if self.cell == "lstm" and not self.sequence:
            backward_args = (self.dout, self.dnext_c, cache)
        else:
            backward_args = (self.dout, cache)
        self.backward = lambda: backward(*backward_args)
        self.cache_bytes = lambda: common.bench.cache_bytes(self.forward()[-1], self.owned)[0]

    def _setup_torch(self):
        torch = common.torch()
        dtype = getattr(torch, str(self.x.dtype))
        N, H = self.h0.shape
        D = self.x.shape[-1]
        x = common.torch_tensor(torch, self.x, True)
        h0 = common.torch_tensor(torch, self.h0, True)
        c0 = common.torch_tensor(torch, self.c0, True)
        dout = common.torch_tensor(torch, self.dout)
        dnext_c = common.torch_tensor(torch, self.dnext_c)
        if self.sequence:
            module = (torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True, dtype=dtype)
                      if self.cell == "rnn" else torch.nn.LSTM(D, H, batch_first=True, dtype=dtype))
            state = (h0.unsqueeze(0) if self.cell == "rnn"
                     else (h0.unsqueeze(0), torch.zeros(1, N, H, dtype=dtype)))
            wrt = [x, h0, *module.parameters()]
            self.forward = lambda: (module(x, state)[0],)
            grads = [dout]
        elif self.cell == "rnn":
            module = torch.nn.RNNCell(D, H, nonlinearity="tanh", dtype=dtype)
            wrt = [x, h0, *module.parameters()]
            self.forward = lambda: (module(x, h0),)
            grads = [dout]
        else:
            module = torch.nn.LSTMCell(D, H, dtype=dtype)
            wrt = [x, h0, c0, *module.parameters()]
            self.forward = lambda: module(x, (h0, c0))
            grads = [dout, dnext_c]
        self.owned = wrt
        outputs = self.forward()
        self.backward = lambda: torch.autograd.grad(outputs, wrt, grads, retain_graph=True)
        self.cache_bytes = lambda: common.torch_saved_bytes(torch, self.forward, wrt)[0]


class _SequenceMemory:
    """What the forward keeps for the backward: exact bytes (``track_``) and process peak RSS."""

    def track_cache_bytes(self, *params):
        """Distinct bytes reachable from the cache (torch: tensors saved by autograd), inputs and
        weights excluded: ``fastrnn.bench.cache_bytes``."""
        return self.cache_bytes()

    track_cache_bytes.unit = "bytes"

    def peakmem_forward_state(self, *params):
        """Peak RSS of the process while a forward result and its cache are held."""
        self.kept = self.forward()


class RNNStep(_Recurrent):
    cell, sequence = "rnn", False
    params = [common.IMPLS, common.step_sizes("rnn"), common.DTYPES]


class RNNSequence(_Recurrent, _SequenceMemory):
    cell, sequence = "rnn", True
    params = [common.IMPLS, common.sizes("rnn"), common.DTYPES]


class LSTMStep(_Recurrent):
    cell, sequence = "lstm", False
    params = [common.IMPLS, common.step_sizes("lstm"), common.DTYPES]


class LSTMSequence(_Recurrent, _SequenceMemory):
    cell, sequence = "lstm", True
    params = [common.IMPLS, common.sizes("lstm"), common.DTYPES]


class LSTMSequenceUnderLoad(_Recurrent):
    """The LSTM sequence of the speed table's float32 N=25 case while ``busy`` competing busy
    processes (``fastrnn.bench.competing_load``) run: how each library degrades when the cores
    are shared.  The load starts after the warm-up call and ends in ``teardown``."""
    cell, sequence = "lstm", True
    param_names = ["impl", "size", "dtype", "busy"]
    params = [common.IMPLS, ["25x16x256x512"], ["float32"], [0, 1, 2]]

    def setup(self, impl, size, dtype, busy):
        super().setup(impl, size, dtype)
        self._load = common.bench.competing_load(busy, seconds=self.timeout)
        self._load.__enter__()

    def teardown(self, *params):
        load = getattr(self, "_load", None)  # absent when setup skipped (torch missing)
        if load is not None:
            load.__exit__(None, None, None)
