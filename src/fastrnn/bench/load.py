"""The load table: one case timed under competing load, every threading setting side by side.

``python -m fastrnn.bench.load`` times one case (default: LSTM 25/16/256/512 float32, forward +
backward) under each condition -- idle, K competing busy processes, and two processes of the
same setting at once ("pair") -- for the settings ``classic`` (the classic code), ``fastrnn``
(as it runs by default: threads on the free cores), ``fastrnn-all-threads`` (all its threads
whatever the load, ``FASTRNN_THREADS=all``: the behaviour before it adapted), ``fastrnn-1-thread``
(``NUMBA_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1``) and ``torch``.  Every (condition, setting) runs in fresh processes;
the rounds go through all of them in turn, so that a change of the machine's state touches every
setting alike.  Reported: the median of every timed call of every round, and its spread (the
10th-90th percentile).  The verdict is the issue's: fastrnn's default within 1.15x of the better
of its one-thread and all-thread medians under the same condition, and not slower than the
classic code.  Run it under ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` as the other benches.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .cases import CASES_BY_NAME, CLASSIC_MODULE, DEFAULT_FAST_MODULE, make_inputs
from .measure import competing_load

DEFAULT_CASE = "lstm_25x16x256x512_f32"
# setting -> (implementation, environment it runs with)
SETTINGS = {
    "classic": ("classic", {}),
    "fastrnn": ("fastrnn", {}),
    "fastrnn-all-threads": ("fastrnn", {"FASTRNN_THREADS": "all"}),
    "fastrnn-1-thread": ("fastrnn", {"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}),
    "torch": ("torch", {}),
}
TOLERANCE = 1.15


def _worker(spec):
    """Per-call seconds of ``spec['calls']`` calls after three warm-up calls."""
    from .cases import numpy_workload, torch_workload

    case = CASES_BY_NAME[spec["case"]]
    inputs = make_inputs(case)
    if spec["impl"] == "torch":
        import torch
        torch.set_num_threads(spec["threads"])
        func = torch_workload(case, inputs)
    else:
        import importlib
        module = CLASSIC_MODULE if spec["impl"] == "classic" else DEFAULT_FAST_MODULE
        func = numpy_workload(case, importlib.import_module(module), inputs)
    for _ in range(3):
        func()
    times = []
    for _ in range(spec["calls"]):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return times


def _start(setting, case, calls, threads, out_path):
    impl, extra_env = SETTINGS[setting]
    spec = {"impl": impl, "case": case, "calls": calls, "threads": threads}
    env = dict(os.environ, **extra_env)
    return subprocess.Popen([sys.executable, "-m", "fastrnn.bench.load", "--worker",
                             json.dumps(spec), "--worker-out", out_path], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _run(setting, case, calls, threads, copies):
    """Per-call times of ``copies`` processes of ``setting`` running at once (1, or 2: a pair)."""
    with tempfile.TemporaryDirectory(prefix="fastrnn-load-") as tmp:
        paths = [os.path.join(tmp, f"{i}.json") for i in range(copies)]
        processes = [_start(setting, case, calls, threads, path) for path in paths]
        times = []
        for process, path in zip(processes, paths):
            _, err = process.communicate(timeout=1800)
            if process.returncode != 0:
                raise RuntimeError(f"{setting}: exit status {process.returncode}: "
                                   + " | ".join(err.strip().splitlines()[-3:]))
            with open(path) as handle:
                times.extend(json.load(handle))
        return times


def measure(case=DEFAULT_CASE, conditions=("idle", "busy 1", "busy 2", "pair"),
            settings=tuple(SETTINGS), rounds=3, calls=15, threads=2, progress=print):
    """{condition: {setting: [per-call seconds of every round]}}."""
    results = {condition: {setting: [] for setting in settings} for condition in conditions}
    for round_index in range(rounds):
        for condition in conditions:
            busy = int(condition.split()[1]) if condition.startswith("busy") else 0
            with competing_load(busy):
                if busy:
                    time.sleep(0.5)  # let the busy loops start
                for setting in settings:
                    copies = 2 if condition == "pair" else 1
                    times = _run(setting, case, calls, threads, copies)
                    results[condition][setting].extend(times)
                    progress(f"round {round_index + 1}/{rounds} {condition:7s} {setting:22s} "
                             f"median {1e3 * np.median(times):8.2f} ms")
    return results


def render(results, case=DEFAULT_CASE):
    """The Markdown table: median ms (10th-90th percentile) per setting and condition."""
    settings = list(next(iter(results.values())))
    lines = [f"{CASES_BY_NAME[case].label}: median ms of every call (10th-90th percentile)", "",
             "| condition | " + " | ".join(settings) + " | fastrnn / best of 1 and all threads "
             f"(<= {TOLERANCE}) | fastrnn <= classic |",
             "|---" * (len(settings) + 3) + "|"]
    for condition, by_setting in results.items():
        medians = {s: float(np.median(t)) * 1e3 for s, t in by_setting.items() if t}
        cells = []
        for setting in settings:
            times = np.asarray(by_setting[setting]) * 1e3
            cells.append(f"{np.median(times):.3g} ({np.percentile(times, 10):.3g}-"
                         f"{np.percentile(times, 90):.3g})" if times.size else "")
        verdicts = ["", ""]
        if {"fastrnn", "fastrnn-all-threads", "fastrnn-1-thread"} <= set(medians):
            best = min(medians["fastrnn-all-threads"], medians["fastrnn-1-thread"])
            ratio = medians["fastrnn"] / best
            verdicts[0] = f"{ratio:.2f} {'pass' if ratio <= TOLERANCE else 'MISS'}"
        if {"fastrnn", "classic"} <= set(medians):
            verdicts[1] = "pass" if medians["fastrnn"] <= medians["classic"] else "MISS"
        lines.append(f"| {condition} | " + " | ".join(cells + verdicts) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastrnn.bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default=DEFAULT_CASE, choices=sorted(CASES_BY_NAME))
    parser.add_argument("--conditions", default="idle,busy 1,busy 2,pair",
                        help="comma-separated: idle, 'busy K', pair (default all four)")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help=f"comma-separated, of: {', '.join(SETTINGS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=15, help="timed calls per process")
    parser.add_argument("--threads", type=int, default=2, help="torch's threads")
    parser.add_argument("--json", metavar="PATH", help="also save the per-call times")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        with open(args.worker_out, "w") as handle:
            json.dump(_worker(json.loads(args.worker)), handle)
        return 0
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    for condition in conditions:
        if not (condition in ("idle", "pair") or (condition.startswith("busy ")
                                                  and condition[5:].isdigit())):
            parser.error(f"--conditions: unknown condition {condition!r}")
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; choose from {list(SETTINGS)}")
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    results = measure(args.case, conditions, settings, args.rounds, args.calls, args.threads,
                      progress=lambda message: print(message, file=sys.stderr, flush=True))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle)
    print(render(results, args.case))
    return 0


if __name__ == "__main__":
    sys.exit(main())
