"""Plain advice at the end of a bench, drawn only from the measured rows of its report: which
variant is fastest here and at what accuracy, whether more threads help, and — where int8 is not
faster than float32 — the likely reason this machine gives (a uint8-I/O model, a CPU without an
int8 dot-product instruction).

It reads a finished report (also one brought back from a device), so the advice is about the
machine the figures come from.
"""

from __future__ import annotations

from typing import Optional

from edgecls.bench import latency
from edgecls.bench.results import BenchReport, Latency, ModelResult
from edgecls.runtime.metrics import accuracies_tied, correct_count, points_text

SECTION = "advice"
NOT_FASTER = 0.9  # an int8 model whose p50 is above 0.9x float32's is "not faster"
ACCURACY_COST_PT = 1.0  # points of top-1 worth a sentence
SUSTAIN_DRIFT = 0.10  # a p50 10 % higher in the last window than in the first
HEATING_C = 5.0  # a rise that can explain a slow-down


# On a tie (latency within the measured spread, accuracy within chance), the simpler file is advised:
# the plain modes before the others, a mixed int8 (some ops kept in float) last.
SIMPLER = ("float32", "int8", "uint8", "dynamic", "float16")
SMALLER = 0.95  # a file counts as smaller than another below this share of its size


def advice(report: BenchReport) -> list[str]:
    """The sentences, most useful first."""
    timed = [m for m in report.models if within_cpus(report, m.latency)]
    if not timed:
        return []
    out = [_fastest(report, timed)]
    out += filter(None, [_threads(report, timed)])
    out += _int8(report, timed)
    out += _sustained(report)
    return out


def add_advice(report: BenchReport) -> None:
    from edgecls.bench.results import add_section

    sentences = advice(report)
    if sentences:
        add_section(report, SECTION, "Advice (from the figures above, on this machine)", ["advice"],
                    [[s] for s in sentences], data=sentences)


def usable_cpus(report: BenchReport) -> int:
    """The CPUs the measurement could use: the host's, within the device profile's cores."""
    return len(report.device.cpus_used or []) or report.machine.usable_cpus


def within_cpus(report: BenchReport, timings: list[Latency]) -> list[Latency]:
    """The thread counts that fit the CPUs the measurement could use (more only measure the scheduler)."""
    return [t for t in timings if t.threads <= usable_cpus(report)]


def best_threads(report: BenchReport, model: ModelResult) -> Latency:
    """A model's fastest thread count within the CPUs; on a tie (the measured spread), the fewest threads."""
    usable = sorted(within_cpus(report, model.latency), key=lambda t: t.threads)
    fastest = min(usable, key=lambda t: t.invoke_ms.p50)
    return next(t for t in usable if t is fastest or latency.tied(fastest, t))


def choice(report: BenchReport) -> Optional[ModelResult]:
    """The .tflite file the advice names: of the files whose accuracy is within chance of the most accurate
    one's (a clearly less accurate file is never advised), the fastest here (at its best thread count); among
    those tied with it within the measured spread, the most accurate (accuracies within chance are tied too),
    then the clearly smaller, then the simpler file (SIMPLER). None when no .tflite was timed."""
    timed = _as_accurate(report, [m for m in report.tflite_models() if within_cpus(report, m.latency)])
    if not timed:
        return None
    ranked = sorted(timed, key=lambda m: best_threads(report, m).invoke_ms.p50)
    fastest = best_threads(report, ranked[0])
    ties = [m for m in ranked if m is ranked[0] or latency.tied(fastest, best_threads(report, m))]
    scored = [m for m in ties if m.accuracy is not None]
    if scored:
        top = max(scored, key=lambda m: m.accuracy.top1)
        ties = [m for m in scored if accuracies_tied(_correct(m), _correct(top))]
    smallest = min(m.size_bytes for m in ties)
    ties = [m for m in ties if m.size_bytes * SMALLER <= smallest]
    return min(ties, key=_simplicity)


def _as_accurate(report: BenchReport, models: list[ModelResult]) -> list[ModelResult]:
    """The models whose top-1 is within chance of the best one's (all of them when none was scored)."""
    scored = [m for m in models if m.accuracy is not None]
    if not scored:
        return models
    top = _correct(max(scored, key=lambda m: m.accuracy.top1))
    return [m for m in scored if accuracies_tied(_correct(m), top)]


def _simplicity(model: ModelResult) -> tuple[bool, int]:
    mixed = "mixed" in model.name
    return mixed, SIMPLER.index(model.mode) if model.mode in SIMPLER else len(SIMPLER)


def _correct(model: ModelResult) -> int:
    return correct_count(model.accuracy.top1, model.accuracy.images)


def _accuracy(report: BenchReport, model: ModelResult) -> str:
    if model.accuracy is None:  # --latency-only: no labelled images
        return "accuracy not measured (--latency-only)"
    text = f"top-1 {model.accuracy.top1:.4f} ({_correct(model)}/{model.accuracy.images})"
    paired = model.vs_reference
    if paired:
        text += f", {points_text(paired.delta_accuracy)} against {paired.reference}"
    elif model.name == report.reference:
        text += ", the float reference"
    return text


def _threads_text(t: Latency) -> str:
    return f"{t.threads} thread{'' if t.threads == 1 else 's'}"


def _fastest(report: BenchReport, timed: list[ModelResult]) -> str:
    chosen = choice(report)
    ranked = sorted(timed, key=lambda m: best_threads(report, m).invoke_ms.p50)
    if chosen is None:
        chosen = ranked[0]
    best = best_threads(report, chosen)
    text = (f"Take {chosen.name} ({chosen.mode}): {best.invoke_ms.p50:.3f} ms p50 at {_threads_text(best)}, "
            f"{_accuracy(report, chosen)}.")
    kept = _as_accurate(report, ranked)  # a clearly less accurate file is never advised, nor tied with it
    passed_over = [m for m in ranked if m not in kept]
    fastest = best_threads(report, (kept or ranked)[0])
    ties = [m for m in kept if m is not chosen and latency.tied(fastest, best_threads(report, m))]
    if ties:
        shown = ", ".join(f"{m.name} {best_threads(report, m).invoke_ms.p50:.3f} ms" for m in ties)
        text += (f" As fast within the measured spread: {shown}; of files this close, the advice takes the most "
                 "accurate (within chance counts as equal), then the clearly smaller, then the simpler one. "
                 f"Ties: {latency.SPREAD_RULE}.")
    rest = [m for m in kept if m is not chosen and m not in ties]
    if rest:
        runner, other = rest[0], best_threads(report, rest[0])
        text += (f" Next: {runner.name} at {other.invoke_ms.p50:.3f} ms "
                 f"({other.invoke_ms.p50 / best.invoke_ms.p50:.2f}x), {_accuracy(report, runner)}.")
    top = max((m for m in ranked if m.accuracy is not None), key=lambda m: m.accuracy.top1, default=None)
    if chosen.accuracy is not None and top is not None and top.accuracy.top1 > chosen.accuracy.top1:
        text += (f" Its top-1 is within chance of the most accurate file's ({top.name}, {_correct(top)}/"
                 f"{top.accuracy.images}): {chosen.accuracy.images} images do not tell them apart.")
    faster = [m for m in passed_over if best_threads(report, m).invoke_ms.p50 < best.invoke_ms.p50]
    if faster:
        text += " Faster, but less accurate beyond chance: " + ", ".join(
            f"{m.name} {best_threads(report, m).invoke_ms.p50:.3f} ms, {_accuracy(report, m)}" for m in faster) + "."
    return text


def _threads(report: BenchReport, timed: list[ModelResult]) -> Optional[str]:
    """Which thread count to run at, among those within the CPUs the measurement could use, and why
    rows beyond them say nothing about a device with more cores."""
    cpus = usable_cpus(report)
    counts = sorted({t.threads for m in report.models for t in m.latency})
    beyond = [n for n in counts if n > cpus]
    note = (f" Rows at {', '.join(map(str, beyond))} threads ran on the {cpus} CPU{'s' if cpus > 1 else ''} this "
            "measurement could use (the host's, within the device profile's): oversubscribed, they are not what a "
            "device with that many cores does, and are left out of this advice." if beyond else "")
    one = {m.name: t for m in timed for t in m.latency if t.threads == 1}
    swept = [m for m in timed if m.name in one and len(within_cpus(report, m.latency)) > 1]
    if not swept:
        return note.strip() or None
    best = {m.name: best_threads(report, m) for m in swept}
    most = max(t.threads for m in swept for t in within_cpus(report, m.latency))
    span = (f"p50 at {most} threads ÷ at 1: " + ", ".join(
        f"{m.name} {next(t for t in m.latency if t.threads == most).invoke_ms.p50 / one[m.name].invoke_ms.p50:.2f}"
        for m in swept))
    counts_best = {t.threads for t in best.values()}
    if counts_best == {1}:
        text = (f"More threads are no faster than 1 for these models within the measured spread ({span}): a model "
                "this small does not fill several cores; use --threads 1 and keep the other cores free.")
    elif len(counts_best) == 1:
        n = counts_best.pop()
        text = f"{n} threads are the fastest here for every model ({span}): use --threads {n} if the cores are free."
    else:
        text = ("The fastest thread count differs by model (" + ", ".join(f"{name} {t.threads}"
                                                                         for name, t in best.items())
                + f"; {span})." + (" Where a faster p50 at more threads is within the measured spread, the "
                                    "fewer threads are named, as they leave cores free." if _tie_decided(report, best)
                                    else ""))
    return text + note


def _tie_decided(report: BenchReport, best: dict[str, Latency]) -> bool:
    """Whether a model's named thread count is not the one with its lowest p50 (the spread made them a tie)."""
    return any(best[m.name].threads != min(within_cpus(report, m.latency), key=lambda t: t.invoke_ms.p50).threads
               for m in report.models if m.name in best)


def _int8(report: BenchReport, timed: list[ModelResult]) -> list[str]:
    features = report.machine.cpu_features
    out = []
    for model in timed:
        if not model.mode.startswith(("int8", "uint8")):
            continue
        usable = within_cpus(report, model.latency)
        ratios = [t.vs_reference.invoke_p50_ratio for t in usable if t.vs_reference]
        paired = model.vs_reference
        if paired and -paired.delta_accuracy * 100 >= ACCURACY_COST_PT:
            out.append(f"{model.name} loses {-paired.delta_accuracy * 100:.2f} pt of top-1 against "
                       f"{paired.reference}: edgecls export --auto-fallback K keeps the worst ops in float.")
        per_thread = ", ".join(f"{t.vs_reference.invoke_p50_ratio:.2f} at {_threads_text(t)}"
                               for t in usable if t.vs_reference)
        if not ratios or min(ratios) < NOT_FASTER:
            if ratios:
                out.append(f"{model.name} is faster than float32 here (p50 ÷ float32's: {per_thread}).")
            continue
        reasons = []
        # io is the model's tensor description, passed through from bench.inputs as JSON
        if (model.io or {}).get("input", {}).get("dtype") == "uint8" or model.mode.startswith("uint8"):
            reasons.append("it is a uint8-I/O (asymmetric) model, which the interpreter's fast signed-int8 kernels "
                           "do not all cover: export --quant int8 instead")
        if features is not None and features.dot_product is False:
            wanted = "asimddp" if report.machine.arch == "aarch64" else "AVX-512 VNNI / AVX-VNNI"
            reasons.append(f"this CPU has no int8 dot-product instruction ({wanted}): int8 products are widened "
                           "to 16 bits, which costs about what float32 does")
        if not reasons:
            reasons.append(f"the model is small ({model.size_bytes / 1024:.0f} KiB): the per-invoke overhead "
                           "and input quantisation weigh as much as the arithmetic int8 saves")
        out.append(f"{model.name} is not faster than float32 here (p50 ÷ float32's: {per_thread}): "
                   + "; ".join(reasons) + ".")
    return out


def _sustained(report: BenchReport) -> list[str]:
    section = report.section("sustained")
    if section is None:
        return []
    data = section.data  # the sustained run's own JSON (bench.sustain.run)
    temps = [s["temp_c"] for s in data["samples"] if s["temp_c"] is not None]
    heated = len(temps) > 1 and max(temps) - temps[0] >= HEATING_C
    out = []
    for name, s in data["summary"].items():
        if s["first_p50_ms"] and s["last_p50_ms"] and s["last_p50_ms"] > s["first_p50_ms"] * (1 + SUSTAIN_DRIFT):
            why = (f"as the CPU heated from {temps[0]:.0f} to {max(temps):.0f} °C: quote the last-window figure for a "
                   "board that runs all day, and cool it" if heated else
                   "with no temperature rise measured" + ("" if temps else " (none is readable here)")
                   + ": other load on this machine is the likelier cause")
            out.append(f"{name} slowed by {(s['last_p50_ms'] / s['first_p50_ms'] - 1) * 100:.0f}% from the first to "
                       f"the last window of the sustained run, {why}.")
    if data["throttled"]["occurred"]:
        out.append("The firmware throttled the CPU during the sustained run: add a heatsink or fan, check the power "
                   "supply, and bench again.")
    return out
