"""Plain advice at the end of a bench, drawn only from the measured rows of its report: which
variant is fastest here and at what accuracy, whether more threads help, and — where int8 is not
faster than float32 — the likely reason this machine gives (a uint8-I/O model, a CPU without an
int8 dot-product instruction).

It reads a finished report (also one brought back from a device), so the advice is about the
machine the figures come from.
"""

from __future__ import annotations

from typing import Optional

from edgecls.bench.results import BenchReport, Latency, ModelResult

SECTION = "advice"
NOT_FASTER = 0.9  # an int8 model whose p50 is above 0.9x float32's is "not faster"
ACCURACY_COST_PT = 1.0  # points of top-1 worth a sentence
MORE_THREADS_GAIN = 0.9  # more threads "help" when they cut p50 below 0.9x of one thread's
SUSTAIN_DRIFT = 0.10  # a p50 10 % higher in the last window than in the first
HEATING_C = 5.0  # a rise that can explain a slow-down


def advice(report: BenchReport) -> list[str]:
    """The sentences, most useful first."""
    timed = [m for m in report.models if m.latency]
    if not timed:
        return []
    out = [_fastest(report, timed)]
    out += filter(None, [_threads(timed)])
    out += _int8(report, timed)
    out += _sustained(report)
    return out


def add_advice(report: BenchReport) -> None:
    from edgecls.bench.results import add_section

    sentences = advice(report)
    if sentences:
        add_section(report, SECTION, "Advice (from the figures above, on this machine)", ["advice"],
                    [[s] for s in sentences], data=sentences)


def _best(model: ModelResult) -> Latency:
    return min(model.latency, key=lambda t: t.invoke_ms.p50)


def _accuracy(report: BenchReport, model: ModelResult) -> str:
    if model.accuracy is None:  # --latency-only: no labelled images
        return "accuracy not measured (--latency-only)"
    text = f"top-1 {model.accuracy.top1:.4f}"
    paired = model.vs_reference
    if paired:
        text += f", {paired.delta_accuracy * 100:+.2f} pt against {paired.reference}"
    elif model.name == report.reference:
        text += ", the float reference"
    return text


def _fastest(report: BenchReport, timed: list[ModelResult]) -> str:
    ranked = sorted(timed, key=lambda m: _best(m).invoke_ms.p50)
    fastest, best = ranked[0], _best(ranked[0])
    text = (f"Fastest here: {fastest.name} ({fastest.mode}), {best.invoke_ms.p50:.3f} ms p50 at "
            f"{best.threads} thread(s), {_accuracy(report, fastest)}.")
    if len(ranked) > 1:
        runner, other = ranked[1], _best(ranked[1])
        text += (f" Next: {runner.name} at {other.invoke_ms.p50:.3f} ms "
                 f"({other.invoke_ms.p50 / best.invoke_ms.p50:.2f}x), {_accuracy(report, runner)}.")
    return text


def _threads(timed: list[ModelResult]) -> Optional[str]:
    one = {m.name: t for m in timed for t in m.latency if t.threads == 1}
    ratios: dict[str, float] = {}
    threads = 1
    for model in timed:
        most = max(model.latency, key=lambda t: t.threads)
        if model.name in one and most.threads > 1:
            ratios[model.name] = most.invoke_ms.p50 / one[model.name].invoke_ms.p50
            threads = most.threads
    if not ratios:
        return None
    helped = [name for name, ratio in ratios.items() if ratio < MORE_THREADS_GAIN]
    span = f"p50 at {threads} threads ÷ at 1: " + ", ".join(f"{name} {r:.2f}" for name, r in ratios.items())
    if not helped:
        return (f"{threads} threads are no faster than 1 for these models ({span}): a model this small does not "
                "fill several cores; use --threads 1 and keep the other cores free.")
    if len(helped) == len(ratios):
        return f"{threads} threads are faster than 1 ({span}): use them if the cores are free."
    return f"{threads} threads help {', '.join(helped)} only ({span})."


def _int8(report: BenchReport, timed: list[ModelResult]) -> list[str]:
    features = report.machine.cpu_features
    out = []
    for model in timed:
        if not model.mode.startswith(("int8", "uint8")):
            continue
        ratios = [t.vs_reference.invoke_p50_ratio for t in model.latency if t.vs_reference]
        paired = model.vs_reference
        if paired and -paired.delta_accuracy * 100 >= ACCURACY_COST_PT:
            out.append(f"{model.name} loses {-paired.delta_accuracy * 100:.2f} pt of top-1 against "
                       f"{paired.reference}: edgecls export --auto-fallback K keeps the worst ops in float.")
        per_thread = ", ".join(f"{t.vs_reference.invoke_p50_ratio:.2f} at {t.threads} thread(s)"
                               for t in model.latency if t.vs_reference)
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
