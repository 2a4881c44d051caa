"""Timing the Transformer's training step: fastrnn vs PyTorch CPU, in separate processes.

One step is the loss and every parameter gradient of the course's ClassificationTransformer
(hidden 128, 2 heads, feed-forward 2048, dim_k = dim_v = dim_q = 96, T = 43) on N random
sentences with the mean binary cross-entropy:

* ``fastrnn``: :meth:`ClassificationTransformer.loss` (pruned to token 0, exactly);
* ``reference``: the same model on the plain NumPy layers of :mod:`fastrnn.reference`;
* ``torch``: the course's PyTorch module, forward + ``backward()`` (all T positions);
* ``torch_pruned``: the same module computed the way fastrnn prunes it (keys and values for
  every token, queries, projection, layer norms and feed-forward for token 0 only).

Each implementation runs in its own process (OpenBLAS / OpenMP threads of one library slow the
other down when they share a process), and the processes alternate, round after round, so that
a busy neighbour on a shared machine hits them alike.  Per implementation it reports the median
of the per-round medians and the spread (min, max) of all timed steps.

    python -m fastrnn.bench.transformer --sizes 32 128 --rounds 5 --threads 2
    python -m fastrnn.bench.transformer --worker fastrnn --n 32 --repeat 20   # one process
    python -m fastrnn.bench.transformer --workload layers   # all-position layers, forward

``--workload layers`` times the course's ``multi_head_attention`` + ``feedforward_layer`` over
all T positions instead (forward, no pruning): fastrnn's full-sequence layers against PyTorch's.

Set ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` off in the benchmarking command only (see the
README): they halve OpenBLAS's speed.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

IMPLS = ("fastrnn", "torch", "torch_pruned", "reference")
CONFIG = dict(hidden_dim=128, num_heads=2, dim_feedforward=2048, dim_k=96, dim_v=96, dim_q=96,
              max_length=43)
VOCAB_SIZE = 8000
T = 43


def _inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB_SIZE, (n, T)), rng.integers(0, 2, n)


def torch_step(torch_module, model, inputs, labels, pruned):
    """One forward + backward of the course module (``model``), all positions or pruned."""
    torch = torch_module
    if not pruned:
        probs = model(inputs)[:, 0]
    else:
        embeds = model.embed(inputs)
        heads = []
        for i in range(1, model.num_heads + 1):
            k = getattr(model, f"k{i}")(embeds)
            v = getattr(model, f"v{i}")(embeds)
            q = getattr(model, f"q{i}")(embeds[:, :1])
            attention = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / np.sqrt(model.dim_k),
                                      dim=2)
            heads.append(torch.bmm(attention, v))
        h = model.norm_mh(embeds[:, :1] + model.attention_head_projection(torch.cat(heads, 2)))
        h = model.feedforward_layer(h)
        probs = model.final_layer(h)[:, 0]
    loss = torch.nn.functional.binary_cross_entropy(probs, labels)
    model.zero_grad(set_to_none=True)
    loss.backward()
    return loss


def course_module(torch_module, vocab_size=VOCAB_SIZE, **config):
    """The course's ClassificationTransformer as a PyTorch module (the test oracle's twin);
    ``config`` overrides :data:`CONFIG`."""
    torch, nn = torch_module, torch_module.nn

    class CourseTransformer(nn.Module):
        def __init__(self, vocab_size, hidden_dim, num_heads, dim_feedforward, dim_k, dim_v,
                     dim_q, max_length):
            super().__init__()
            self.num_heads, self.dim_k = num_heads, dim_k
            self.token_embeddings = nn.Embedding(vocab_size, hidden_dim)
            self.position_embeddings = nn.Embedding(max_length, hidden_dim)
            for i in range(1, num_heads + 1):
                setattr(self, f"k{i}", nn.Linear(hidden_dim, dim_k))
                setattr(self, f"v{i}", nn.Linear(hidden_dim, dim_v))
                setattr(self, f"q{i}", nn.Linear(hidden_dim, dim_q))
            self.attention_head_projection = nn.Linear(dim_v * num_heads, hidden_dim)
            self.norm_mh = nn.LayerNorm(hidden_dim)
            self.W1 = nn.Linear(hidden_dim, dim_feedforward)
            self.W2 = nn.Linear(dim_feedforward, hidden_dim)
            self.norm_ffn = nn.LayerNorm(hidden_dim)
            self.final_dense = nn.Linear(hidden_dim, 1)

        def embed(self, inputs):
            positions = torch.arange(inputs.shape[1]).expand(inputs.shape[0], -1)
            return self.token_embeddings(inputs) + self.position_embeddings(positions)

        def multi_head_attention(self, inputs):
            heads = []
            for i in range(1, self.num_heads + 1):
                k = getattr(self, f"k{i}")(inputs)
                v = getattr(self, f"v{i}")(inputs)
                q = getattr(self, f"q{i}")(inputs)
                attention = torch.softmax(torch.bmm(q, k.transpose(1, 2)) / np.sqrt(self.dim_k),
                                          dim=2)
                heads.append(torch.bmm(attention, v))
            return self.norm_mh(inputs + self.attention_head_projection(torch.cat(heads, 2)))

        def feedforward_layer(self, inputs):
            return self.norm_ffn(inputs + self.W2(torch.relu(self.W1(inputs))))

        def final_layer(self, inputs):
            return torch.sigmoid(self.final_dense(inputs[:, 0, :]))

        def forward(self, inputs):
            return self.final_layer(self.feedforward_layer(self.multi_head_attention(
                self.embed(inputs))))

    return CourseTransformer(vocab_size, **{**CONFIG, **config})


def _layers_function(impl, n, threads):
    """Forward of the course's multi_head_attention + feedforward_layer over all T positions
    (no pruning), on embeddings computed beforehand."""
    inputs, _ = _inputs(n)
    if impl.startswith("torch"):
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = course_module(torch)
        with torch.no_grad():
            embeds = model.embed(torch.from_numpy(inputs))

        def forward():
            with torch.no_grad():
                return model.feedforward_layer(model.multi_head_attention(embeds))
        return forward
    import fastrnn.reference
    from fastrnn.classifiers.transformer import ClassificationTransformer
    vocab = {f"w{i}": i for i in range(VOCAB_SIZE)}
    model = ClassificationTransformer(vocab, **CONFIG,
                                      layers=fastrnn.reference if impl == "reference" else None)
    embeds = model.embed(inputs)
    forward = lambda: model.feedforward_layer(model.multi_head_attention(embeds))  # noqa: E731
    forward()
    _limit_pools(threads)
    return forward


def _limit_pools(threads):
    if "numba" in sys.modules:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
        _limit_pools.kept = threadpool_limits(limits=threads)
    except ImportError:
        pass


def _step_function(impl, n, threads):
    inputs, labels = _inputs(n)
    if impl in ("torch", "torch_pruned"):
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = course_module(torch)
        x, y = torch.from_numpy(inputs), torch.from_numpy(labels.astype(np.float32))
        return lambda: torch_step(torch, model, x, y, impl == "torch_pruned")
    import fastrnn.reference
    from fastrnn.classifiers.transformer import ClassificationTransformer
    vocab = {f"w{i}": i for i in range(VOCAB_SIZE)}
    layers = fastrnn.reference if impl == "reference" else None
    model = ClassificationTransformer(vocab, **CONFIG, layers=layers)
    step = lambda: model.loss(inputs, labels)  # noqa: E731
    step()   # compile (or load the cache) before limiting the pools
    _limit_pools(threads)
    return step


def worker(impl, n, repeat, threads, workload="step"):
    """Time ``repeat`` calls after two warm-up calls; print a JSON line of seconds."""
    make = _layers_function if workload == "layers" else _step_function
    step = make(impl, n, threads)
    step()
    step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"impl": impl, "n": n, "times": times}))


def run(sizes, impls, rounds, repeat, threads, workload="step"):
    """Alternate one worker process per (size, impl) for ``rounds`` rounds; returns a summary
    dict[(impl, n)] = (median of round medians, min, max) in seconds."""
    samples = {}
    for _ in range(rounds):
        for n in sizes:
            for impl in impls:
                out = subprocess.run(
                    [sys.executable, "-m", "fastrnn.bench.transformer", "--worker", impl,
                     "--n", str(n), "--repeat", str(repeat), "--threads", str(threads),
                     "--workload", workload],
                    capture_output=True, text=True, check=True, env=os.environ.copy())
                times = json.loads(out.stdout.strip().splitlines()[-1])["times"]
                samples.setdefault((impl, n), []).append(times)
    summary = {}
    for key, per_round in samples.items():
        flat = [t for times in per_round for t in times]
        summary[key] = (float(np.median([np.median(t) for t in per_round])), min(flat), max(flat))
    return summary


def render_markdown(summary, sizes, impls, args):
    """The README's table: per N, each implementation's median ms (min-max) and PyTorch's time
    over fastrnn's."""
    from .run import _cpu_model

    what = ("one training step (loss + every gradient)" if args.workload == "step" else
            "the attention + feed-forward layers over all positions, forward")
    lines = [f"<!-- generated by `python -m fastrnn.bench.transformer --markdown --workload "
             f"{args.workload} --rounds {args.rounds} --repeat {args.repeat} --impls "
             f"{' '.join(impls)}`; do not edit by hand -->",
             f"{what}; {args.threads} threads, {os.cpu_count()} cores ({_cpu_model()}); "
             f"median of {args.rounds} rounds x {args.repeat} calls, ms (min-max):", "",
             "| N | " + " | ".join(impls) + " | " + " | ".join(
                 f"{impl} / fastrnn" for impl in impls if impl != "fastrnn") + " |",
             "|---" * (1 + len(impls) + len(impls) - 1) + "|"]
    for n in sizes:
        cells = [f"{summary[(impl, n)][0] * 1e3:.3g} ({summary[(impl, n)][1] * 1e3:.3g}-"
                 f"{summary[(impl, n)][2] * 1e3:.3g})" for impl in impls]
        fast = summary[("fastrnn", n)][0]
        ratios = [f"{summary[(impl, n)][0] / fast:.1f}x" for impl in impls if impl != "fastrnn"]
        lines.append(f"| {n} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", choices=IMPLS)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--impls", nargs="+", choices=IMPLS,
                        default=["fastrnn", "torch", "torch_pruned"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workload", choices=("step", "layers"), default="step",
                        help="step: loss + gradients (default); layers: forward of the "
                             "attention and feed-forward layers over all positions")
    parser.add_argument("--markdown", action="store_true",
                        help="print the README's table (Markdown) instead of the text report")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.n, args.repeat, args.threads, args.workload)
        return
    impls = [i for i in args.impls if args.workload == "step" or i != "torch_pruned"]
    summary = run(args.sizes, impls, args.rounds, args.repeat, args.threads, args.workload)
    args.impls = impls
    if args.markdown:
        print(render_markdown(summary, args.sizes, impls, args))
        return
    print(f"{'N':>5} {'impl':>13} {'median ms':>10} {'min':>8} {'max':>8} {'torch/this':>11}")
    for n in args.sizes:
        base = summary.get(("torch", n), (None,))[0]
        for impl in args.impls:
            med, lo, hi = summary[(impl, n)]
            ratio = f"{base / med:10.2f}x" if base else ""
            print(f"{n:5d} {impl:>13} {med * 1e3:10.2f} {lo * 1e3:8.2f} {hi * 1e3:8.2f} {ratio}")


if __name__ == "__main__":
    main()
