"""Rendering: the text report and the README's Markdown section, from a results dict."""
from .cases import DEFAULT_FAST_MODULE, REPORTED_ENV_PREFIXES


def _ms(seconds):
    if seconds is None:
        return "-"
    milliseconds = seconds * 1e3
    return f"{milliseconds:.3g}" if milliseconds < 100 else f"{milliseconds:.0f}"


def _speedup(ratio, target, passed):
    if ratio is None:
        return "-", ("" if target is None else f">= {target:g}x")
    verdict = "" if passed is None else (" pass" if passed else " MISS")
    return f"{ratio:.2f}x", ("" if target is None else f">= {target:g}x{verdict}")


def _worst(errors):
    """``"error (output)"`` for the output with the largest error."""
    name = max(errors, key=errors.get)
    return errors[name], f"{errors[name]:.2g} ({name})"


def _accuracy_cells(row):
    accuracy = row.get("accuracy") or {}
    if not accuracy or "error" in accuracy:
        return ("-", "-", accuracy.get("error", "not measured") if accuracy else "not measured")
    verdict = "pass" if accuracy.get("passed") else "MISS"
    if not accuracy.get("dtype_kept", True):
        verdict += " (output dtype differs from input)"
    if "fastrnn" in accuracy:
        fast, fast_cell = _worst(accuracy["fastrnn"])
        classic, classic_cell = _worst(accuracy["classic"])
        ratio = f" (ratio {fast / classic:.2f})" if classic > 0 else ""
        return fast_cell, classic_cell, f"{accuracy['criterion']}{ratio}: {verdict}"
    return (_worst(accuracy["fastrnn_vs_classic"])[1], "(the reference)",
            f"{accuracy['criterion']}: {verdict}")


def _table(header, rows, markdown):
    if markdown:
        def line(cells):
            return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
        return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, ["-" * width for width in widths], *rows])


def _speed_rows(results):
    rows = []
    for row in results["cases"]:
        times = row["times"]
        classic_ratio, classic_target = _speedup(row["ratios"]["classic"], row["target_classic"],
                                                 row["passed"]["classic"])
        torch_ratio, torch_target = _speedup(row["ratios"]["torch"], row["target_torch"],
                                             row["passed"]["torch"])
        rows.append([row["label"], _ms(times["classic"]), _ms(times["fastrnn"]),
                     _ms(times["torch"]), classic_ratio, classic_target, torch_ratio,
                     torch_target])
    return rows


SPEED_HEADER = ["case (N, T, D, H, dtype)", "classic ms", "fastrnn ms", "torch ms",
                "vs classic", "target", "vs torch", "target"]


def _notes(results):
    notes = []
    # A worker that crashed is an error of its one case (see _merge_timing), not of its pool.
    for impl, worker in results["workers"].items():
        if worker.get("unavailable"):
            notes.append(f"{impl}: {worker['unavailable']}")
    for row in results["cases"]:
        for impl, note in row["notes"].items():
            if note != results["workers"].get(impl, {}).get("unavailable"):
                notes.append(f"{row['label']}, {impl}: {note}")
    return notes


def _memory_lines(results, markdown):
    memory = results.get("memory")
    if not memory:
        return []
    if "worker_error" in memory:
        return [f"memory: {memory['worker_error']}"]

    def cell(impl):
        entry = memory.get(impl, {})
        if "bytes" not in entry:
            return entry.get("error", "-"), "-"
        return (f"{entry['bytes'] / 2**20:.2f} MiB ({entry['bytes']:,} B)",
                f"{entry['bytes_excluding_output'] / 2**20:.2f} MiB")

    classic, fast = memory.get("classic", {}), memory.get("fastrnn", {})
    verdict = "-"
    if "bytes" in classic and "bytes" in fast:
        verdict = "pass" if fast["bytes"] <= classic["bytes"] else "MISS"
    header = ["lstm_forward cache kept for backward", "bytes (inputs/weights excluded)",
              "also excluding the returned h"]
    rows = [[f"classic, {memory['label']}", *cell("classic")],
            [f"fastrnn, {memory['label']}", *cell("fastrnn")],
            ["target: fastrnn <= classic", verdict, ""]]
    return [_table(header, rows, markdown)]


def _startup_lines(results, markdown):
    startup = results.get("startup")
    if not startup:
        return []

    def seconds(value):
        return "-" if value is None else f"{value:.3f} s"

    def verdict(value, limit):
        return "-" if value is None else ("pass" if value < limit else "MISS")

    cold, warm = startup.get("cold", {}), startup.get("warm", {})
    imported = startup.get("import_fastrnn_s")
    header = ["start-up (fresh interpreter)", "time", "target"]
    rows = [["import fastrnn", seconds(imported), f"< 0.3 s {verdict(imported, 0.3)}"],
            [f"import {startup['module']}, warm cache", seconds(warm.get("import_s")), ""],
            ["first lstm fwd+bwd, warm on-disk cache", seconds(warm.get("first_call_s")),
             f"< 0.5 s {verdict(warm.get('first_call_s'), 0.5)}"],
            ["first lstm fwd+bwd, cold cache (compiles)", seconds(cold.get("first_call_s")),
             "reported"]]
    lines = [_table(header, rows, markdown)]
    for key in ("import_fastrnn_error", "error"):
        if key in startup:
            lines.append(f"start-up error: {startup[key]}")
    return lines


def _pool_summary(pool):
    return (f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('library')}), "
            f"{pool.get('num_threads')} threads, {pool.get('threading_layer')}, "
            f"arch {pool.get('architecture')}")


def _samples(settings):
    """How a time was formed: "best of 2 rounds x 7 samples", or under load the median."""
    rounds = settings.get("rounds", 1)  # results saved before rounds existed had one
    samples = (f"{rounds} rounds x {settings['repeats']} samples" if rounds > 1
               else f"{settings['repeats']} samples")
    busy = settings.get("busy", 0)
    if busy:
        return f"median of {samples}, under {busy} competing busy process(es)"
    return f"best of {samples}"


def _config_lines(results):
    config = results["config"]
    settings = results["settings"]
    loads = "/".join(f"{load[0]:.2f}" if load else "?" for load in (
        config.get("load_average_at_start"), config.get("load_average_at_end")))
    lines = [f"machine: {config['cpu']}, {config['cpu_count']} CPUs; {config['platform']}; "
             f"1-min load average at start/end {loads}",
             f"settings: {_samples(settings)} of >= {settings['min_time']} s; "
             f"threads {settings['threads']} (torch.set_num_threads, threadpoolctl limits); "
             f"fastrnn module {settings['fast_module']}",
             "env: " + (", ".join(f"{k}={v}" for k, v in config["env"].items()) or "(none of "
                        + "/".join(prefix.rstrip("_") for prefix in REPORTED_ENV_PREFIXES)
                        + "_* set)")]
    for impl, worker in results["workers"].items():
        info = worker.get("environment")
        if not info:
            continue
        versions = ", ".join(f"{name} {info[name]}" for name in ("numpy", "numba", "scipy",
                                                                  "torch") if name in info)
        extra = ""
        if "torch_threads" in info:
            extra = f", torch threads {info['torch_threads']}"
        if "numba_threads" in info:
            extra += f", numba threads {info['numba_threads']}"
        if info.get("numba_threading_layer"):
            extra += f", threading layer {info['numba_threading_layer']}"
        if info.get("fastrnn_threads"):
            extra += f", threads per kernel: {info['fastrnn_threads']}"
        lines.append(f"{impl} process: python {info['python']}, {versions}{extra}")
        for pool in info.get("threadpools") or []:
            lines.append(f"    {_pool_summary(pool)}")
    return lines


def _slow_blas_warning(keys):
    return (f"WARNING: {' and '.join(keys)} set: OpenBLAS runs slower kernels than this machine "
            f"supports; measure with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
            f"python -m fastrnn.bench`")


def _accuracy_rows(results):
    return [[row["label"], *_accuracy_cells(row)] for row in results["cases"]
            if row.get("accuracy") is not None]


ACCURACY_HEADER = ["accuracy: max|err|/max|value|, worst output", "fastrnn", "classic",
                   "criterion"]
ACCURACY_NOTE = ("accuracy: float32 rows compare fastrnn and classic (both float32) with a float64 "
                 "computation; float64 rows compare fastrnn with classic")


def _stand_in(results):
    module = results["settings"]["fast_module"]
    return "" if module == DEFAULT_FAST_MODULE else f"; 'fastrnn' is {module}, a stand-in"


def _warnings(results):
    """Reasons not to publish these figures."""
    config, warnings = results["config"], []
    if config["slow_blas_env"]:
        warnings.append(_slow_blas_warning(config["slow_blas_env"]))
    if results["settings"].get("quick"):
        warnings.append("WARNING: --quick run: checks the harness; not figures to report")
    # Only the load before the run says whether other processes competed: the load at the
    # end counts the bench's own processes (two threads busy make it ~2).
    loaded = max(1.0, 0.5 * (config.get("cpu_count") or 2))
    start = config.get("load_average_at_start")
    if start and start[0] > loaded:
        warnings.append(f"WARNING: load average {start[0]:.1f} on {config['cpu_count']} CPUs "
                        "when the run began: other processes competed; figures are unreliable")
    return warnings


def render_text(results):
    """The human-readable report: speed table, accuracy, memory, start-up, configuration."""
    out = []
    if _warnings(results):
        out += _warnings(results) + [""]
    out += ["fastrnn bench: forward+backward per call, "
            f"{_samples(results['settings'])} (ratios are speed-ups of fastrnn)"
            + _stand_in(results),
            _table(SPEED_HEADER, _speed_rows(results), markdown=False)]
    accuracy_rows = _accuracy_rows(results)
    if accuracy_rows:
        out += ["", ACCURACY_NOTE, _table(ACCURACY_HEADER, accuracy_rows, markdown=False)]
    for section in (_memory_lines(results, False), _startup_lines(results, False)):
        if section:
            out += [""] + section
    notes = _notes(results)
    if notes:
        out += ["", "notes:"] + [f"  {note}" for note in notes]
    out += ["", "configuration:"] + [f"  {line}" for line in _config_lines(results)]
    return "\n".join(out)


def render_markdown(results):
    """The README speed section: generated from a measurement, pasted, never edited by hand."""
    out = ["<!-- generated by `python -m fastrnn.bench --markdown`; do not edit by hand -->"]
    for warning in _warnings(results):
        out += ["", f"> **{warning}**"]
    out += ["", _table(SPEED_HEADER, _speed_rows(results), markdown=True)]
    accuracy_rows = _accuracy_rows(results)
    if accuracy_rows:
        out += ["", ACCURACY_NOTE + ":", "", _table(ACCURACY_HEADER, accuracy_rows, markdown=True)]
    for section in (_memory_lines(results, True), _startup_lines(results, True)):
        if section:
            out += [""] + section
    notes = _notes(results)
    if notes:
        out += [""] + [f"- {note}" for note in notes]
    settings = results["settings"]
    out += ["", f"Times in ms per forward+backward call, {_samples(settings)}, each "
            "case's implementations timed in turn, each in its own process; ratios are "
            "fastrnn's speed-ups"
            f"{_stand_in(results)}. Measured {results['created']}."]
    out += ["", "<details><summary>configuration</summary>", "", "```"]
    out += _config_lines(results)
    out += ["```", "", "</details>"]
    return "\n".join(out)


