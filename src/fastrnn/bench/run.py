"""Orchestration: every (case, implementation) timed in a fresh process, in rounds, side by side."""
import os
import platform
import sys
import time
from dataclasses import asdict

import numpy as np

from .cases import (DEFAULT_FAST_MODULE, IMPLEMENTATIONS, REPORTED_ENV_PREFIXES,
                    SCHEMA_VERSION, SLOW_BLAS_ENV)
from .measure import _spawn_worker, competing_load, measure_startup


def _reported_env():
    return {key: value for key, value in sorted(os.environ.items())
            if key.startswith(REPORTED_ENV_PREFIXES)}


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:      # pragma: no cover - not available on this platform
        return None


def _ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _merge_timing(merged, worker, name):
    """Adds one worker's timing of case ``name`` to ``merged`` (one implementation, all rounds):
    the best time over the rounds, every sample kept."""
    for key, value in worker.items():
        if key not in ("cases", "worker_error"):  # a crashed worker is one case's error
            merged.setdefault(key, value)
    entry = worker.get("cases", {}).get(name)
    if entry is None:
        if "worker_error" in worker:
            entry = {"error": worker["worker_error"]}
        else:
            return
    kept = merged["cases"].get(name)
    if kept is None or "seconds" not in kept:
        merged["cases"][name] = dict(entry, rounds=1 if "seconds" in entry else 0)
    elif "seconds" in entry:
        kept["samples"] = kept["samples"] + entry["samples"]
        kept["rounds"] += 1
        if entry["seconds"] < kept["seconds"]:
            kept.update(seconds=entry["seconds"], number=entry["number"])


def run_benchmarks(cases, *, fast_module=DEFAULT_FAST_MODULE, repeats=7, min_time=0.1,
                   threads=2, skip=(), quick=False, rounds=2, busy=0, progress=None):
    """Measures ``cases`` and returns the results dict that :func:`render_text` prints.

    Every (case, implementation) is timed in a fresh process, the implementations of a case one
    after the other and the cases in turn, ``rounds`` times over (the order of the implementations
    reversed every other round): the speed of a shared machine drifts over minutes
    (docs/performance.md, M26), and timing a case's implementations side by side keeps that drift
    out of the ratios.  A case's time is the best over all rounds; with ``busy`` competing processes
    (:func:`competing_load`) running through the timing, it is the median of every sample.
    """
    say = progress or (lambda message: None)
    names = [case.name for case in cases]
    results = {
        "schema": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "argv": sys.argv[1:],
        "settings": {"repeats": repeats, "min_time": min_time, "threads": threads,
                     "rounds": rounds, "quick": quick, "fast_module": fast_module,
                     "skip": sorted(skip), "busy": busy},
        "config": {"python": sys.version.split()[0], "platform": platform.platform(),
                   "load_average_at_start": _load_average(),
                   "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "env": _reported_env(),
                   "slow_blas_env": [key for key in SLOW_BLAS_ENV if key in os.environ]},
        "workers": {}, "cases": [],
    }
    workers = results["workers"]
    for impl in IMPLEMENTATIONS:
        workers[impl] = ({"unavailable": "skipped (--skip)", "cases": {}} if impl in skip
                         else {"cases": {}})
    if busy:
        say(f"starting {busy} competing busy process(es)")
    with competing_load(busy):
        for round_ in range(rounds):
            order = IMPLEMENTATIONS if round_ % 2 == 0 else IMPLEMENTATIONS[::-1]
            for name in names:
                timed = [impl for impl in order if "unavailable" not in workers[impl]]
                say(f"timing round {round_ + 1}/{rounds}: {name} ({', '.join(timed)})")
                for impl in timed:
                    spec = dict(impl=impl, cases=[name], fast_module=fast_module,
                                repeats=repeats, min_time=min_time, threads=threads)
                    _merge_timing(workers[impl], _spawn_worker("time", spec), name)
    accuracy = {}
    if "accuracy" not in skip:
        say("accuracy ...")
        accuracy = _spawn_worker("accuracy", dict(cases=names, fast_module=fast_module))
        results["accuracy_worker"] = {k: v for k, v in accuracy.items() if k != "cases"}
    for case in cases:
        row = asdict(case)
        row["label"] = case.label
        row["times"], row["notes"] = {}, {}
        for impl in IMPLEMENTATIONS:
            worker = workers[impl]
            entry = worker["cases"].get(case.name, {})
            row["times"][impl] = (float(np.median(entry["samples"])) if busy and "samples" in entry
                                  else entry.get("seconds"))
            note = worker.get("unavailable") or entry.get("error") or entry.get("note")
            if note:
                row["notes"][impl] = note
        classic, fast, torch_ = (row["times"][impl] for impl in IMPLEMENTATIONS)
        row["ratios"] = {"classic": _ratio(classic, fast), "torch": _ratio(torch_, fast)}
        row["passed"] = {
            peer: (None if target is None or row["ratios"][peer] is None
                   else bool(row["ratios"][peer] >= target))
            for peer, target in (("classic", case.target_classic),
                                 ("torch", case.target_torch))}
        row["accuracy"] = accuracy.get("cases", {}).get(case.name)
        results["cases"].append(row)
    if "memory" not in skip:
        say("memory ...")
        results["memory"] = _spawn_worker("memory", dict(fast_module=fast_module))
    if "startup" not in skip:
        say("start-up (cold numba cache compiles) ...")
        results["startup"] = measure_startup(fast_module, max(1, min(repeats, 5)))
    results["config"]["load_average_at_end"] = _load_average()
    return results


