"""The course's PyTorch module (rebuilt in ``fastrnn.bench.transformer.course_module``, plain
PyTorch, the course's way: per-head Linear layers k1, v1, q1, k2, ...; softmax over keys;
LayerNorm(x + sublayer(x))), as an independent oracle: its weights loaded into
ClassificationTransformer give the same outputs of every deliverable method (float32 1e-5,
float64 1e-10) and the same gradients as autograd.  Skipped when torch is not installed (the
optional ``compare`` extra); fastrnn itself never imports torch."""
import numpy as np
import pytest

from fastrnn.bench.transformer import course_module
from fastrnn.classifiers.transformer import ClassificationTransformer

torch = pytest.importorskip("torch")
nn = torch.nn


CONFIGS = [dict(hidden_dim=128, num_heads=2, dim_feedforward=2048, dim_k=96, dim_v=96, dim_q=96,
                max_length=43),
           dict(hidden_dim=12, num_heads=3, dim_feedforward=20, dim_k=5, dim_v=7, dim_q=5,
                max_length=9)]
TOL = {np.float32: 1e-5, np.float64: 1e-10}


def build(config, dtype, seed):
    torch.manual_seed(seed)
    vocab = {f"w{i}": i for i in range(50)}
    course = course_module(torch, vocab_size=len(vocab), **config).to(
        torch.float64 if dtype == np.float64 else torch.float32)
    model = ClassificationTransformer(vocab, **config, dtype=dtype)
    model.load_state_dict(course.state_dict())   # tensors, read through .numpy()
    return course, model


def rel(actual, expected):
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected))
                 / max(np.max(np.abs(expected)), 1e-30))


@pytest.mark.parametrize("config", CONFIGS, ids=["course", "three_heads"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_deliverables_equal_pytorch(config, dtype):
    course, model = build(config, dtype, seed=0)
    rng = np.random.default_rng(0)
    T = config["max_length"]
    inputs = rng.integers(0, 50, (6, T))
    tensor_inputs = torch.from_numpy(inputs)
    tol = TOL[dtype]
    with torch.no_grad():
        embeds = course.embed(tensor_inputs)
        attended = course.multi_head_attention(embeds)
        ff = course.feedforward_layer(attended)
        probs = course.final_layer(ff)
        out = course(tensor_inputs)
    # each method on the course's own intermediate values, as the notebook checks them
    assert rel(model.embed(inputs), embeds) <= tol
    assert rel(model.multi_head_attention(embeds.numpy()), attended) <= tol
    assert rel(model.feedforward_layer(attended.numpy()), ff) <= tol
    assert rel(model.final_layer(ff.numpy()), probs) <= tol
    assert rel(model.forward(inputs), out) <= tol
    assert rel(model.loss(inputs), out) <= tol
    np.testing.assert_array_equal(inputs, tensor_inputs.numpy())


@pytest.mark.parametrize("config", CONFIGS, ids=["course", "three_heads"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_equal_autograd(config, dtype):
    course, model = build(config, dtype, seed=1)
    rng = np.random.default_rng(1)
    inputs = rng.integers(0, 50, (8, config["max_length"]))
    labels = rng.integers(0, 2, 8)
    probs = course(torch.from_numpy(inputs))[:, 0]
    target = torch.from_numpy(labels.astype(np.float64 if dtype == np.float64 else np.float32))
    torch_loss = nn.functional.binary_cross_entropy(probs, target)
    torch_loss.backward()
    loss, grads = model.loss(inputs, labels)
    # float32: both sides round differently; 1e-4 of each gradient's largest entry
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert abs(float(loss) - torch_loss.item()) <= tol * abs(torch_loss.item())
    for name, param in course.named_parameters():
        expected = param.grad.numpy()
        if name.startswith("k") and name.endswith(".bias"):   # zero up to rounding, both sides
            scale = np.max(np.abs(course.get_parameter(name.replace("bias", "weight"))
                                  .grad.numpy()))
            assert np.max(np.abs(grads[name])) <= 1e-5 * scale
            continue
        assert rel(grads[name], expected) <= tol, name
