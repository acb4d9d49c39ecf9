"""Sustained runs (`edgecls bench ... --sustain 10m`): steady inference for minutes, sampled once a
second, to show what a board does as it heats up.

Every model benched is invoked in turn (A B A B ...), so they all see the same temperature. Each
second gives a sample: the p50/p90 of that second's invokes per model, the CPU temperature
(/sys/class/thermal), the current clock (cpufreq, else /proc/cpuinfo) and, on a Raspberry Pi,
`vcgencmd get_throttled`. The report section compares the first and the last window (a minute, or
a third of a shorter run) and says whether the firmware throttled. A sensor that is not there (a VM
has no thermal zone, a non-Pi no vcgencmd) is reported as absent, never filled in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgecls.bench.results import BenchReport, Section
from edgecls.errors import EdgeclsError
from edgecls.reporter import SILENT, Reporter
from edgecls.runtime.cpu import SINCE_BOOT_SHIFT, current_mhz, read_celsius, thermal_zone, throttle_words, throttled

if TYPE_CHECKING:
    from edgecls.runtime.settings import ModelSettings

SECTION = "sustained"
PLOT_NAME = "sustained.png"
WINDOW_SECONDS = 60.0  # "first minute vs last minute"
MIN_SECONDS = 1.0
MAX_SECONDS = 24 * 3600.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'10m' -> 600.0, '90s' or '90' -> 90.0, '1h' -> 3600.0, '1m30s' -> 90.0. One-line errors."""
    parts = re.fullmatch(r"\s*((?:\d+(?:\.\d+)?\s*[smh]?\s*)+)", text or "")
    pieces = re.findall(r"(\d+(?:\.\d+)?)\s*([smh]?)", parts.group(1)) if parts else []
    if not pieces or (len(pieces) > 1 and not all(unit for _, unit in pieces)):
        raise EdgeclsError(f"--sustain takes a duration like 10m, 90s or 1h (got {text!r})")
    seconds = sum(float(value) * _UNITS[unit or "s"] for value, unit in pieces)
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        raise EdgeclsError(f"--sustain must be between {MIN_SECONDS:g} s and 24 h (got {text!r})")
    return seconds


# ---------------------------------------------------------------------- the run
def run(models: Sequence[Any], images: Mapping[str, np.ndarray], seconds: float, threads: int,
        settings: ModelSettings, reporter: Reporter = SILENT, interval: float = 1.0) -> dict[str, Any]:
    """Invoke every model (BenchModel) in turn for `seconds` with `threads` interpreter threads, each
    opened with `settings` (the bench's) and fed its own decoding of the test images (`images`, by model
    name: models of different input sizes run together); returns the section's data: per-second
    samples, the sensors' sources and a first/last-window summary."""
    classifiers = {m.name: settings.open(m.path, threads=threads) for m in models}
    names = list(classifiers)
    zone = thermal_zone()
    reporter(f"Sustained run: {seconds:g} s of steady inference, {len(names)} model(s) in turn, {threads} thread(s), "
        f"sampled every {interval:g} s")
    for name in names:  # warm: the first invokes allocate and fill caches
        for i in range(3):
            _invoke(classifiers[name], images[name][i % len(images[name])][None])
    throttled_start = throttled()
    seen_throttle = 0
    raw: dict[str, list[list[float]]] = {name: [] for name in names}  # per second, per model
    bucket: dict[str, list[float]] = {name: [] for name in names}
    samples: list[dict[str, Any]] = []
    frequency_source = "none"
    start = time.perf_counter()
    next_tick, i = start + interval, 0
    while True:
        now = time.perf_counter()
        if now >= next_tick:
            mhz, frequency_source = current_mhz()
            state = throttled()
            seen_throttle |= state or 0
            samples.append({"t": round(now - start, 3),
                            "p50_ms": {n: _percentile(bucket[n], 50) for n in names},
                            "p90_ms": {n: _percentile(bucket[n], 90) for n in names},
                            "invokes": {n: len(bucket[n]) for n in names},
                            "temp_c": read_celsius(zone[0]) if zone else None, "mhz": mhz,
                            "throttled": None if state is None else hex(state)})
            for n in names:
                raw[n].append(bucket[n])
            bucket = {n: [] for n in names}
            next_tick += interval
            if now - start >= seconds:
                break
            continue
        name = names[i % len(names)]
        own = images[name]
        bucket[name].append(_invoke(classifiers[name], own[(i // len(names)) % len(own)][None]))
        i += 1
    throttled_end = throttled()
    per_window = max(1, int(min(WINDOW_SECONDS, seconds / 3) // interval))
    window = per_window * interval
    summary = {}
    for n in names:
        first = [v for second in raw[n][:per_window] for v in second]
        last = [v for second in raw[n][-per_window:] for v in second]
        summary[n] = {"first_p50_ms": _percentile(first, 50), "last_p50_ms": _percentile(last, 50),
                      "first_p99_ms": _percentile(first, 99), "last_p99_ms": _percentile(last, 99),
                      "invokes": sum(len(s) for s in raw[n])}
    occurred = None
    if throttled_start is not None and throttled_end is not None:
        new_since_boot = (throttled_end >> SINCE_BOOT_SHIFT) & ~(throttled_start >> SINCE_BOOT_SHIFT)
        occurred = bool((seen_throttle | throttled_end) & 0xF or new_since_boot & 0xF)
    return {"seconds": seconds, "interval_s": interval, "threads": threads, "window_s": window, "models": names,
            "temperature_source": f"{zone[0]} ({zone[1]})" if zone else None,
            "frequency_source": frequency_source, "summary": summary, "samples": samples,
            "throttled": {"start": None if throttled_start is None else hex(throttled_start),
                          "end": None if throttled_end is None else hex(throttled_end),
                          "seen": hex(seen_throttle) if throttled_start is not None else None,
                          "occurred": occurred}}


def _invoke(clf: Any, batch: np.ndarray) -> float:
    clf.set_input(batch)
    started = time.perf_counter()
    clf.invoke()
    return (time.perf_counter() - started) * 1e3


def _percentile(values: Sequence[float], q: float) -> Optional[float]:
    return float(np.percentile(values, q)) if len(values) else None


# ---------------------------------------------------------------------- the report
def add_section(report: BenchReport, data: dict[str, Any]) -> Section:
    """The sustained run as a report section: first vs last window per model, and notes that say
    what the temperature, the clock and the firmware did (or that they could not be read)."""
    from edgecls.bench.results import add_section as add

    window = f"{data['window_s']:g} s"
    rows = []
    for name in data["models"]:
        s = data["summary"][name]
        change = (s["last_p50_ms"] / s["first_p50_ms"] - 1) * 100 if s["first_p50_ms"] and s["last_p50_ms"] else None
        rows.append([name, s["first_p50_ms"], s["last_p50_ms"], None if change is None else f"{change:+.1f}%",
                     s["first_p99_ms"], s["last_p99_ms"], s["invokes"]])
    return add(report, SECTION, f"Sustained run: {data['seconds']:g} s at {data['threads']} thread(s)",
               ["model", f"p50 first {window}", f"p50 last {window}", "p50 change", f"p99 first {window}",
                f"p99 last {window}", "invokes"], rows, notes=notes(data), data=data)


def notes(data: dict[str, Any]) -> list[str]:
    samples = data["samples"]
    temps = [s["temp_c"] for s in samples if s["temp_c"] is not None]
    if temps:
        temperature = (f"CPU temperature ({data['temperature_source']}): {temps[0]:.1f} °C at the start, "
                       f"{temps[-1]:.1f} °C at the end, {max(temps):.1f} °C at most.")
    else:
        temperature = ("CPU temperature: not available here (no thermal zone in /sys/class/thermal, as in most VMs): "
                       "none is reported.")
    clocks = [s["mhz"] for s in samples if s["mhz"] is not None]
    if clocks:
        clock = (f"CPU clock ({data['frequency_source']}): {clocks[0]:.0f} MHz at the start, {clocks[-1]:.0f} MHz at "
                 f"the end, {min(clocks):.0f}–{max(clocks):.0f} MHz.")
    else:
        clock = "CPU clock: not readable here (no cpufreq, no \"cpu MHz\")."
    t = data["throttled"]
    if t["occurred"] is None:
        throttle = "Throttling: unknown (no vcgencmd here: it exists on a Raspberry Pi only)."
    elif t["occurred"]:
        words = ", ".join(throttle_words(int(t["seen"], 16) | int(t["end"], 16)
                                         | (int(t["end"], 16) >> SINCE_BOOT_SHIFT))) or "flags set"
        throttle = f"Throttling: YES during the run ({words}; vcgencmd get_throttled {t['start']} → {t['end']})."
    else:
        throttle = f"Throttling: no (vcgencmd get_throttled {t['start']} at the start, {t['end']} at the end)."
    return [temperature, clock, throttle,
            f"p50/p99: invoke alone, batch 1, ms; the models ran in turn; {len(samples)} one-second samples."]


def plot(plt: Any, data: dict[str, Any]) -> Any:
    """Latency (p50 per second, p90 dashed), temperature and clock over time, one panel each."""
    samples = data["samples"]
    t = [s["t"] for s in samples]
    from edgecls.plotting import legend_outside, line_handle, short_label, swatch

    figure, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True, layout="constrained")
    handles, labels = [], []
    for i, name in enumerate(data["models"]):
        color = f"C{i % 10}"
        axes[0].plot(t, [s["p50_ms"][name] for s in samples], color=color)
        axes[0].plot(t, [s["p90_ms"][name] for s in samples], color=color, linestyle="--", linewidth=0.8)
        handles.append(swatch(color))
        labels.append(short_label(name))
    # a colour per model, a line style per percentile: under the panels, not on the lines
    handles += [line_handle(color="0.3"), line_handle(color="0.3", linestyle="--", linewidth=0.8)]
    labels += ["p50", "p90"]
    if t:  # the two windows the section compares
        for low, high in ((0, data["window_s"]), (data["seconds"] - data["window_s"], t[-1])):
            axes[0].axvspan(low, high, color="0.85", alpha=0.5, linewidth=0)
    axes[0].set_ylabel("invoke ms")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title(f"Sustained run, {data['threads']} thread(s)")
    rows = ((axes[1], "temp_c", "CPU °C", "no CPU temperature sensor here (VM?)"),
            (axes[2], "mhz", f"CPU MHz ({data['frequency_source']})", "CPU clock not readable here"))
    for ax, key, label, missing in rows:
        values = [s[key] for s in samples]
        if any(v is not None for v in values):
            ax.plot(t, [np.nan if v is None else v for v in values], color="C3" if key == "temp_c" else "C2")
        else:
            ax.text(0.5, 0.5, missing, ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_yticks([])
        ax.set_ylabel(label)
    throttled_at = [s["t"] for s in samples if s["throttled"] and int(s["throttled"], 16) & 0xF]
    for x in throttled_at:
        axes[2].axvline(x, color="C1", alpha=0.3)
    axes[2].set_xlabel("seconds")
    for ax in axes:
        ax.grid(alpha=0.3)
    legend_outside(figure, handles, labels, fontsize=8)
    return figure
