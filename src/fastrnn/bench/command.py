"""The command line: ``python -m fastrnn.bench`` and ``fastrnn bench``."""
import argparse
import json
import os
import sys

from .cases import CASES, DEFAULT_FAST_MODULE, SLOW_BLAS_ENV, select_cases
from .measure import WORKERS
from .run import run_benchmarks
from .report import _slow_blas_warning, render_markdown, render_text


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m fastrnn.bench",
        description="Time fastrnn against the classic NumPy code and PyTorch; report accuracy, "
                    "memory and start-up.  Run under "
                    "`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` for real figures.")
    parser.add_argument("--quick", action="store_true",
                        help="fewer, shorter samples (3 x 0.02 s): checks the harness, "
                             "not for reporting")
    parser.add_argument("--cases", metavar="PATTERNS",
                        help="comma-separated case names, globs or substrings "
                             "(e.g. 'lstm', 'rnn_2x*', 'softmax'); see --list")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--markdown", action="store_true",
                        help="print the README speed table (Markdown) instead of the text report")
    parser.add_argument("--json", metavar="PATH", help="also save the full results as JSON")
    parser.add_argument("--load", metavar="PATH",
                        help="render results saved with --json instead of measuring")
    parser.add_argument("--repeat", type=int, metavar="K", help="samples per case (default 7)")
    parser.add_argument("--min-time", type=float, metavar="S",
                        help="seconds per sample (default 0.1)")
    parser.add_argument("--rounds", type=int, metavar="R",
                        help="times every case is timed, in turn with the other cases, each "
                             "time in new processes; the best counts (default 2, 1 with "
                             "--quick)")
    parser.add_argument("--busy", type=int, default=0, metavar="K",
                        help="time under load: K competing busy processes (plain Python "
                             "loops), started before the timing and always ended after it; "
                             "the table then reports medians (default 0)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for torch, BLAS and numba (default 2)")
    parser.add_argument("--fast-module", default=DEFAULT_FAST_MODULE, metavar="MODULE",
                        help="module timed as 'fastrnn' (default fastrnn.rnn_layers); "
                             "'fastrnn.reference' exercises the harness alone")
    parser.add_argument("--skip", default="", metavar="PARTS",
                        help="comma-separated parts to leave out: torch, accuracy, memory, "
                             "startup")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-spec", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    """Entry point of ``python -m fastrnn.bench`` and ``fastrnn bench``; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)

    if args.worker:
        result = WORKERS[args.worker](json.loads(args.worker_spec))
        with open(args.worker_out, "w") as handle:
            json.dump(result, handle)
        return 0

    if args.list:
        for case in CASES:
            targets = ", ".join(f">= {target:g}x {peer}" for peer, target in
                                (("classic", case.target_classic), ("torch", case.target_torch))
                                if target is not None)
            print(f"{case.name:36s} {case.label:44s} {targets}")
        return 0

    if args.load:
        with open(args.load) as handle:
            results = json.load(handle)
    else:
        skip = {part.strip() for part in args.skip.split(",") if part.strip()}
        unknown = skip - {"torch", "accuracy", "memory", "startup"}
        if unknown:
            parser.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}")
        cases = select_cases(args.cases)
        if not cases:
            parser.error(f"--cases {args.cases!r} matches no case; see --list")
        slow = [key for key in SLOW_BLAS_ENV if key in os.environ]
        if slow:
            print(_slow_blas_warning(slow), file=sys.stderr)
        repeats = args.repeat or (3 if args.quick else 7)
        min_time = args.min_time or (0.02 if args.quick else 0.1)
        rounds = args.rounds or (1 if args.quick else 2)
        if repeats < 1 or rounds < 1:
            parser.error("--repeat and --rounds must be at least 1")
        if args.busy < 0:
            parser.error("--busy must be 0 or more")
        results = run_benchmarks(
            cases, fast_module=args.fast_module, repeats=repeats, min_time=min_time,
            threads=args.threads, skip=skip, quick=args.quick, rounds=rounds, busy=args.busy,
            progress=lambda message: print(message, file=sys.stderr, flush=True))

    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    print(render_markdown(results) if args.markdown else render_text(results))
    return 0

