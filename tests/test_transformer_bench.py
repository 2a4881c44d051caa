"""The Transformer timing harness: its PyTorch baselines compute what they claim, and a worker
process reports timings."""
import json
import subprocess
import sys

import numpy as np
import pytest

from fastrnn.bench import transformer as bench_transformer


def test_hand_pruned_torch_equals_full_torch():
    """The 'torch_pruned' baseline is the same function as the full module: same loss, same
    gradients (float64), so comparing against it is fair."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = bench_transformer.course_module(torch, vocab_size=50, hidden_dim=16,
                                             dim_feedforward=24, dim_k=4, dim_v=4, dim_q=4,
                                             max_length=9).double()
    rng = np.random.default_rng(0)
    inputs = torch.from_numpy(rng.integers(0, 50, (5, 9)))
    labels = torch.from_numpy(rng.integers(0, 2, 5).astype(np.float64))
    results = []
    for pruned in (False, True):
        loss = bench_transformer.torch_step(torch, module, inputs, labels, pruned)
        results.append((loss.item(), [p.grad.clone() for p in module.parameters()]))
    (full_loss, full_grads), (pruned_loss, pruned_grads) = results
    assert abs(full_loss - pruned_loss) < 1e-14
    for g_full, g_pruned in zip(full_grads, pruned_grads):
        assert torch.max(torch.abs(g_full - g_pruned)) <= 1e-12 * max(1.0, torch.max(
            torch.abs(g_full)).item())


def test_worker_reports_times():
    out = subprocess.run([sys.executable, "-m", "fastrnn.bench.transformer", "--worker", "fastrnn",
                          "--n", "2", "--repeat", "2", "--threads", "1"],
                         capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["impl"] == "fastrnn" and report["n"] == 2
    assert len(report["times"]) == 2 and all(t > 0 for t in report["times"])
