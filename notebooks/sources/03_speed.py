"""Source of notebooks/03_speed.ipynb (regenerate with notebooks/build_notebooks.py)."""
# %% [markdown]
# # Speed: fastrnn against the classic NumPy code and PyTorch
#
# **What this shows.** Forward + backward times of fastrnn, of the classic per-timestep NumPy
# code (`fastrnn.reference`) and of PyTorch's `nn.RNN` / `nn.LSTM` on the CPU (when torch is
# installed), as plots of time and speed-up:
#
# 1. the cases of fastrnn's speed table, from the benchmark command `python -m fastrnn.bench`;
# 2. the LSTM across batch size, hidden size and sequence length.
#
# Every number is measured when the notebook runs (or loaded from a file the benchmark command
# wrote); none is typed in. Each implementation runs in its own subprocess, as the benchmark
# command does, because OpenBLAS and torch thread pools slow each other down when they share one.
#
# **These are quick measurements** (few, short samples, so the notebook stays under a minute),
# taken in whatever environment runs the notebook. The figures to quote come from the
# benchmark command itself, run on a quiet machine with OpenBLAS on its native kernels:
#
#     env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastrnn.bench --json bench.json
#
# Point `FASTRNN_BENCH_JSON` at that file and part 1 plots it instead of measuring.

# %%
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import matplotlib.pyplot as plt

from fastrnn import bench

IMPLS = ("classic", "fastrnn", "torch")
COLORS = {"classic": "C0", "fastrnn": "C3", "torch": "C2"}

# %% [markdown]
# ## 1. The speed table, from `python -m fastrnn.bench`
#
# Without `FASTRNN_BENCH_JSON`, run the command in `--quick` mode on the cases that take
# seconds, not minutes: the small RNN/LSTM cases and the softmax loss (memory, start-up and
# accuracy reports skipped). The full table adds the captioning-size cases (H = 512, 1024).

# %%
saved = os.environ.get("FASTRNN_BENCH_JSON")
if saved:
    with open(saved) as f:
        results = json.load(f)
    print("loaded", saved, "measured", results["created"])
else:
    quick_cases = "rnn_2x*,lstm_2x*,lstm_10x*,softmax*"
    with tempfile.TemporaryDirectory() as tmp:
        json_path = os.path.join(tmp, "bench.json")
        command = [sys.executable, "-m", "fastrnn.bench", "--quick", "--cases", quick_cases,
                   "--skip", "memory,startup,accuracy", "--json", json_path]
        print("$ python", " ".join(command[1:]))
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        with open(json_path) as f:
            results = json.load(f)

print(bench.render_text(results))

# %%
rows = results["cases"]
labels = [row["label"] for row in rows]
fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.5), sharey=True)
y = np.arange(len(rows))
for k, impl in enumerate(IMPLS):
    times = [row["times"][impl] or np.nan for row in rows]
    axes[0].barh(y + (k - 1) * 0.27, np.array(times) * 1e3, height=0.27, color=COLORS[impl], label=impl)
axes[0].set_xscale("log")
axes[0].set_xlabel("ms per forward + backward (best of the samples)")
axes[0].set_yticks(y, labels)
axes[0].invert_yaxis()
axes[0].legend()
for k, peer in enumerate(("classic", "torch")):
    ratios = [row["ratios"][peer] or np.nan for row in rows]
    axes[1].barh(y + (k - 0.5) * 0.4, ratios, height=0.4, color=COLORS[peer], label=f"vs {peer}")
    targets = [row[f"target_{peer}"] or np.nan for row in rows]
    axes[1].scatter(targets, y + (k - 0.5) * 0.4, marker="|", s=200, color="k")
axes[1].axvline(1.0, color="0.5", lw=0.8)
axes[1].set_xscale("log")
axes[1].set_xlabel("fastrnn speed-up (black ticks: the targets)")
axes[1].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The LSTM across batch, hidden size and sequence length
#
# float32 forward + backward of `lstm_forward` / `lstm_backward` (torch: `nn.LSTM` forward and
# all gradients), around a middle case N = 16, T = 16, D = H = 128, varying one size at a
# time. The inputs and the timed work are the benchmark command's own (`fastrnn.bench.make_inputs`,
# `numpy_workload`, `torch_workload`, `best_of`); each implementation is timed in a fresh
# subprocess with two threads, like `python -m fastrnn.bench --threads 2`.

# %%
BASE = dict(N=16, T=16, H=128)
SWEEPS = {"N": (1, 8, 64), "H": (32, 64, 128, 256), "T": (4, 16, 64)}


def sweep_shape(**sizes):
    s = {**BASE, **sizes}
    return (s["N"], s["T"], s["H"], s["H"])  # (N, T, D, H) with D = H


shapes = sorted({sweep_shape(**{axis: value}) for axis, values in SWEEPS.items() for value in values})

WORKER = r"""
import json, sys
from fastrnn import bench
impl, shapes = sys.argv[1], json.loads(sys.argv[2])
threads, out = 2, {}
if impl == "torch":
    try:
        import torch
    except ImportError as error:
        print(json.dumps({"unavailable": str(error)})); sys.exit(0)
    torch.set_num_threads(threads)
else:
    import importlib, numba
    layers = importlib.import_module("fastrnn.reference" if impl == "classic" else "fastrnn.rnn_layers")
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
for shape in shapes:
    case = bench.Case("lstm_" + "x".join(map(str, shape)), "lstm", tuple(shape), "float32")
    inputs = bench.make_inputs(case)
    func = bench.torch_workload(case, inputs) if impl == "torch" else bench.numpy_workload(case, layers, inputs)
    out[case.name] = bench.best_of(func, repeats=3, min_time=0.02)[0]
print(json.dumps(out))
"""

sweep = {}
for impl in IMPLS:
    done = subprocess.run([sys.executable, "-c", WORKER, impl, json.dumps(shapes)],
                          check=True, capture_output=True, text=True)
    sweep[impl] = json.loads(done.stdout.strip().splitlines()[-1])
    if "unavailable" in sweep[impl]:
        print(f"{impl}: skipped ({sweep[impl]['unavailable']})")


def seconds(impl, shape):
    return sweep[impl].get("lstm_" + "x".join(map(str, shape)), np.nan)


# %%
fig, axes = plt.subplots(2, 3, figsize=(11, 6))
for col, (axis, values) in enumerate(SWEEPS.items()):
    for impl in IMPLS:
        if "unavailable" in sweep[impl]:
            continue
        times = np.array([seconds(impl, sweep_shape(**{axis: v})) for v in values])
        axes[0, col].loglog(values, times * 1e3, "o-", color=COLORS[impl], label=impl)
        if impl != "fastrnn":
            fast = np.array([seconds("fastrnn", sweep_shape(**{axis: v})) for v in values])
            axes[1, col].loglog(values, times / fast, "o-", color=COLORS[impl], label=f"vs {impl}")
    fixed = ", ".join(f"{k} = {v}" for k, v in BASE.items() if k != axis)
    axes[0, col].set_title(f"varying {axis} ({fixed}, D = H)", fontsize=9)
    axes[1, col].axhline(1.0, color="0.5", lw=0.8)
    axes[1, col].set_xlabel(axis)
    for ax in axes[:, col]:
        ax.set_xticks(values, [str(v) for v in values])
        ax.minorticks_off()
axes[0, 0].set_ylabel("ms per forward + backward")
axes[1, 0].set_ylabel("fastrnn speed-up (x)")
axes[0, 0].legend()
axes[1, 0].legend()
fig.tight_layout()
plt.show()

print(f"{'N, T, D, H':>20s}" + "".join(f"{impl + ' ms':>12s}" for impl in IMPLS))
for shape in shapes:
    print(f"{str(shape):>20s}" + "".join(f"{seconds(impl, shape) * 1e3:12.3f}" for impl in IMPLS))

# %% [markdown]
# Reading the plots: the classic code pays Python and NumPy call overhead at every time step,
# fastrnn's compiled loops do not, so the gap is widest where that overhead dominates (small N
# and H, long T); as N and H grow the per-step matrix products take over in all three
# implementations and the ratios move towards what the BLAS allows. Quick samples on a busy
# machine are noisy (two threads per implementation, and any other load on the cores shows
# up directly): take the figures to quote from the benchmark command's report.
