"""An independent oracle: PyTorch float64 (nn.RNN / nn.LSTM and their cells) and autograd.

Run against the reference too: it checks the yardstick itself.  torch's gate order along 4H is
i, f, g, o; the contract's is i, f, o, g, so the blocks are permuted on the way in and out.
"""
import numpy as np
import pytest

from _helpers import LSTM, LSTM_STEP, RNN, RNN_STEP, max_rel_error

torch = pytest.importorskip("torch")

TOL = 1e-10
SHAPES = [dict(N=3, T=5, D=4, H=6), dict(N=1, T=1, D=1, H=1), dict(N=2, T=30, D=7, H=3)]


def to_torch_gates(W, H):
    """Columns i, f, o, g (contract) -> rows i, f, g, o (torch weight layout, (4H, in))."""
    i, f, o, g = (W[..., k * H:(k + 1) * H] for k in range(4))
    return torch.tensor(np.concatenate([i, f, g, o], axis=-1).T.copy())


def from_torch_gates(G, H):
    """torch gradient (4H, in) in i, f, g, o order -> contract layout (in, 4H) i, f, o, g."""
    G = G.detach().numpy().T
    i, f, g, o = (G[..., k * H:(k + 1) * H] for k in range(4))
    return np.concatenate([i, f, o, g], axis=-1)


def assert_close(actual, expected, names):
    errors = {n: max_rel_error(a, e) for n, a, e in zip(names, actual, expected)}
    assert all(e <= TOL for e in errors.values()), errors


def _module(cls, D, H, Wx, Wh, b, gates):
    with torch.no_grad():
        if cls in (torch.nn.RNN, torch.nn.LSTM):
            mod = cls(D, H, batch_first=True, dtype=torch.float64,
                      **({"nonlinearity": "tanh"} if cls is torch.nn.RNN else {}))
            w_ih, w_hh, b_ih, b_hh = (mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0,
                                      mod.bias_hh_l0)
        else:
            mod = cls(D, H, dtype=torch.float64,
                      **({"nonlinearity": "tanh"} if cls is torch.nn.RNNCell else {}))
            w_ih, w_hh, b_ih, b_hh = mod.weight_ih, mod.weight_hh, mod.bias_ih, mod.bias_hh
        if gates == 4:
            w_ih.copy_(to_torch_gates(Wx, H))
            w_hh.copy_(to_torch_gates(Wh, H))
            b_ih.copy_(to_torch_gates(b[None, :], H)[:, 0])
        else:
            w_ih.copy_(torch.tensor(Wx.T.copy()))
            w_hh.copy_(torch.tensor(Wh.T.copy()))
            b_ih.copy_(torch.tensor(b))
        b_hh.zero_()
    return mod, (w_ih, w_hh, b_ih)


def _weight_grads(params, H, gates):
    w_ih, w_hh, b_ih = params
    if gates == 4:
        return (from_torch_gates(w_ih.grad, H), from_torch_gates(w_hh.grad, H),
                from_torch_gates(b_ih.grad[:, None], H)[0])
    return w_ih.grad.numpy().T, w_hh.grad.numpy().T, b_ih.grad.numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s.values())))
@pytest.mark.parametrize("case", [RNN, LSTM], ids=["rnn", "lstm"])
def test_sequence_against_torch(case, shape, any_impl, rng):
    a = case.build(rng, **shape)
    N, H = a["h0"].shape
    D = a["x"].shape[2]
    gates = 4 if case is LSTM else 1
    mod, params = _module(torch.nn.LSTM if gates == 4 else torch.nn.RNN, D, H, a["Wx"],
                          a["Wh"], a["b"], gates)
    x = torch.tensor(a["x"], requires_grad=True)
    h0 = torch.tensor(a["h0"][None], requires_grad=True)
    if gates == 4:
        h, _ = mod(x, (h0, torch.zeros_like(h0)))  # lstm_forward starts from c0 = 0
    else:
        h, _ = mod(x, h0)
    (h * torch.tensor(a["dh"])).sum().backward()
    expected = (h.detach().numpy(), x.grad.numpy(), h0.grad.numpy()[0],
                *_weight_grads(params, H, gates))
    assert_close(case.run(any_impl, a), expected, case.names)


@pytest.mark.parametrize("case", [RNN_STEP, LSTM_STEP], ids=["rnn_step", "lstm_step"])
def test_step_against_torch_cells(case, any_impl, rng):
    a = case.build(rng, N=4, D=5, H=3)
    N, H = a["prev_h"].shape
    D = a["x"].shape[1]
    gates = 4 if case is LSTM_STEP else 1
    mod, params = _module(torch.nn.LSTMCell if gates == 4 else torch.nn.RNNCell, D, H,
                          a["Wx"], a["Wh"], a["b"], gates)
    x = torch.tensor(a["x"], requires_grad=True)
    prev_h = torch.tensor(a["prev_h"], requires_grad=True)
    if gates == 4:
        prev_c = torch.tensor(a["prev_c"], requires_grad=True)
        next_h, next_c = mod(x, (prev_h, prev_c))
        ((next_h * torch.tensor(a["dnext_h"])).sum()
         + (next_c * torch.tensor(a["dnext_c"])).sum()).backward()
        expected = (next_h.detach().numpy(), next_c.detach().numpy(), x.grad.numpy(),
                    prev_h.grad.numpy(), prev_c.grad.numpy(), *_weight_grads(params, H, gates))
    else:
        next_h = mod(x, prev_h)
        (next_h * torch.tensor(a["dnext_h"])).sum().backward()
        expected = (next_h.detach().numpy(), x.grad.numpy(), prev_h.grad.numpy(),
                    *_weight_grads(params, H, gates))
    assert_close(case.run(any_impl, a), expected, case.names)


def test_softmax_loss_against_torch(any_impl, rng):
    N, T, V = 4, 5, 9
    x = 3 * rng.standard_normal((N, T, V))
    y = rng.integers(0, V, (N, T))
    mask = rng.random((N, T)) < 0.7
    xt = torch.tensor(x, requires_grad=True)
    per_token = torch.nn.functional.cross_entropy(xt.reshape(N * T, V),
                                                  torch.tensor(y.reshape(-1)), reduction="none")
    loss = (per_token * torch.tensor(mask.reshape(-1), dtype=torch.float64)).sum() / N
    loss.backward()
    got_loss, got_dx = any_impl.temporal_softmax_loss(x, y, mask)
    assert abs(float(got_loss) - loss.item()) <= TOL * abs(loss.item())
    assert max_rel_error(got_dx, xt.grad.numpy()) <= TOL


def test_gate_remap_is_not_the_identity(rng):
    """The oracle's permutation matters: feeding torch the contract layout unpermuted gives a
    different LSTM, so these tests would catch an implementation using torch's order."""
    W = rng.standard_normal((2, 8))
    assert not np.array_equal(to_torch_gates(W, 2).numpy(), W.T)
    np.testing.assert_array_equal(from_torch_gates(to_torch_gates(W, 2), 2), W)
