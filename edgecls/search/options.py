"""`edgecls search` options: one record (edgecls.options), its defaults and its checks (no TensorFlow: the CLI
reads them).

The search space is three grids: the .tflite backbones in --backbones × --heads × --views (a new head
on each, edgecls.transfer); the from-scratch CNNs --archs × --sizes × --widths (edgecls.train); and
--students distilled from the best backbone candidate into the from-scratch shapes that fit the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgecls.bounds import BOUNDS, check_bound
from edgecls.data import DEDUPE_MODES
from edgecls.errors import EdgeclsError
from edgecls.export.modes import DEFAULT_RUNS
from edgecls.options import OUTPUT, check, option, shown
from edgecls.parsing import split_list
from edgecls.train.options import HEADS

SCRATCH_ARCHS = ("mobile", "seed")  # the from-scratch CNNs of edgecls.train.model
# The quantisation variants of a Keras candidate (export --target's, without the diagnosis fallbacks).
VARIANTS = ("int8", "float32", "dynamic", "float16", "int8-litert", "int8-pct99.9", "int8-pct99.99")


# The help's panels, in the order `edgecls search --help` shows them.
DATA, BUDGET, SPACE = "Data", "Budget", "Search space"
STUDENTS = "Students (distilled from the best backbone)"
PANELS = (DATA, BUDGET, SPACE, STUDENTS, OUTPUT)


@dataclass
class SearchOptions:
    """Every option of `edgecls search` (edgecls.options: the single source of each; bounds from edgecls.bounds)."""

    data: str = option(required=True, panel=DATA,
                       help="A folder of class sub-folders (or digits, an IDX folder, ...)")
    target: str = option(  # host | a device profile (rpi4, ...) | user@host
        required=True, panel=BUDGET, metavar="DEVICE",
        help="Where latency is measured: host (this machine), a device profile (rpi4, rpi5, ...: this machine under "
        "its constraints) or user@host (the device itself, over SSH)")
    max_latency_ms: float = option(required=True, panel=BUDGET, metavar="MS",
                                   help="Latency budget: invoke p50 at batch 1 on the target")
    max_size_kb: Optional[float] = option(None, panel=BUDGET, metavar="KB", show_default="no limit",
                                          help="Size budget of the .tflite file (1 KB = 1000 bytes)")
    backbones: Optional[str] = option(  # a folder of pretrained .tflite backbones (or one file)
        None, panel=SPACE, kind=Path, metavar="DIR", show_default="none: from-scratch candidates only",
        help="A folder of pretrained .tflite backbones (or one file): a new head on each; the best one teaches the "
        "students")
    budget_s: Optional[float] = option(  # None: no limit
        None, panel=BUDGET, metavar="SECONDS", show_default="no limit",
        help="Time for the whole search: cheap candidates first; a candidate whose estimated time does not fit is "
        "skipped (listed with why); training stops at the end; 60 s are kept for the last timing")
    out: Optional[str] = option(  # None: runs/<data>-search
        None, panel=OUTPUT, kind=Path, show_default="runs/<data>-search",
        help="The search folder; a search run again into it reuses its finished candidates")
    seed: int = option(0, panel=DATA, help="Seed of the split and of every candidate")
    val_fraction: float = option(0.1, panel=DATA, help="Validation share: the choice is made on it")
    test_fraction: float = option(0.1, panel=DATA, help="Test share: scored only for the chosen file, after the choice")
    dedupe: Optional[str] = option(None, choices=DEDUPE_MODES, what="--dedupe", command_line=False)  # as train's
    heads: str = option("linear,mlp", panel=SPACE, help="Heads on each backbone: comma list of linear, mlp")
    views: str = option("1,4", panel=SPACE, help="Views per training picture for the backbone heads: comma list")
    archs: str = option("mobile,seed", panel=SPACE,
                        help=f"From-scratch CNNs: comma list of {', '.join(SCRATCH_ARCHS)}")
    sizes: str = option("64,96,128", panel=SPACE, help="Input sizes of the from-scratch CNNs, px: comma list")
    widths: str = option("0.5,1", panel=SPACE,
                         help="Width multipliers of the from-scratch CNNs (train's --alpha): comma list")
    epochs: int = option(30, panel=SPACE,  # from-scratch candidates (early stopping on validation)
                         help="Epochs of a from-scratch candidate (early stopping on validation)")
    students: int = option(  # from-scratch shapes that fit, each distilled from the best backbone candidate
        1, panel=STUDENTS,
        help="How many from-scratch shapes within the budget are also distilled (the best from scratch first)")
    student_epochs: int = option(120, panel=STUDENTS, help="Epochs of a student")
    student_patience: int = option(30, panel=STUDENTS, help="Early-stopping patience of a student, epochs")
    distill_alpha: float = option(0.0, panel=STUDENTS, help="As train's --distill-alpha")
    distill_temperature: float = option(1.0, panel=STUDENTS, help="As train's --distill-temperature")
    mixup: float = option(0.4, panel=STUDENTS, help="As train's --mixup")
    variants: str = option(
        ",".join(VARIANTS), panel=SPACE,
        help=f"The .tflite files made of each Keras candidate: comma list of {', '.join(VARIANTS)} (a backbone "
        "candidate keeps its backbone's quantisation)")
    timing_runs: int = option(DEFAULT_RUNS, panel=BUDGET, metavar="N",
                              help="Timed images per file on the target (interleaved rounds)")
    remote: Any = field(default=None, repr=False)  # edgecls.transport.RemoteOptions for user@host

    @property
    def head_list(self) -> list[str]:
        return split_list(self.heads, unique=True)

    @property
    def view_list(self) -> list[int]:
        return _numbers(self.views, "--views", int)

    @property
    def arch_list(self) -> list[str]:
        return split_list(self.archs, unique=True)

    @property
    def size_list(self) -> list[int]:
        return _numbers(self.sizes, "--sizes", int)

    @property
    def width_list(self) -> list[float]:
        return _numbers(self.widths, "--widths", float)

    @property
    def variant_list(self) -> list[str]:
        return split_list(self.variants, unique=True)


def _numbers(text: str, option: str, kind: type) -> list:
    values = []
    for item in split_list(text, unique=True):
        try:
            values.append(kind(item))
        except ValueError:
            raise EdgeclsError(f"{option}: {item!r} is not a{'n integer' if kind is int else ' number'}") from None
    return values


def default_out(options: SearchOptions) -> Path:
    return Path("runs") / f"{Path(options.data.rstrip('/')).name}-search"


def backbone_files(options: SearchOptions) -> list[Path]:
    """The .tflite backbones --backbones names (a folder: every .tflite in it, sorted; or one file)."""
    if options.backbones is None:
        return []
    path = Path(options.backbones).expanduser()
    if path.is_file():
        files = [path] if path.suffix.lower() == ".tflite" else []
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".tflite" and p.is_file())
    else:
        raise EdgeclsError(f"--backbones {options.backbones}: no such folder or file")
    if not files:
        raise EdgeclsError(f"--backbones {options.backbones}: no .tflite files there")
    return files


def validate(o: SearchOptions) -> None:
    """One-line errors for everything that can be checked before any work."""
    def bad(message: str) -> None:
        raise EdgeclsError(message)

    check(o)  # every number within edgecls.bounds, --dedupe's choices
    for head in o.head_list:
        if head not in HEADS:
            bad(f"unknown head {shown(head)} in --heads: use a comma list of {', '.join(HEADS)}")
    for views in o.view_list:
        check_bound("--views", views)
    for arch in o.arch_list:
        if arch not in SCRATCH_ARCHS:
            bad(f"unknown architecture {shown(arch)} in --archs: use a comma list of {', '.join(SCRATCH_ARCHS)}")
    for size in o.size_list:
        low, high = BOUNDS["--img-size"].low, BOUNDS["--img-size"].high  # train's --img-size
        if not low <= size <= high:
            bad(f"--sizes must be between {low:g} and {high:g} pixels (got {size})")
    for width in o.width_list:
        if not 0 < width <= 2:
            bad(f"--widths must be in (0, 2] (got {width:g})")
    for variant in o.variant_list:
        if variant not in VARIANTS:
            bad(f"unknown variant {shown(variant)} in --variants: use a comma list of {', '.join(VARIANTS)}")
    if not o.variant_list:
        bad("--variants is empty: name at least one (int8 is the usual choice)")
    if not (o.head_list and o.view_list) and o.backbones is not None:
        bad("--heads and --views must each name at least one value with --backbones")
    if not (o.arch_list and o.size_list and o.width_list) and o.backbones is None:
        bad("nothing to search: give --backbones, or --archs, --sizes and --widths")
    backbone_files(o)


def options_table(o: SearchOptions) -> dict[str, Any]:
    """The options as search.json records them (what a resumed search compares)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(o).items() if k != "remote"}
