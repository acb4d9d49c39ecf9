"""What `edgecls data check` is asked to do: CheckOptions, the single source of its options
(edgecls.options), and its check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgecls.errors import EdgeclsError
from edgecls.options import argument, check, option
from edgecls.runtime.settings import threads_option

DEFAULT_MAX_PAGES = 5  # contact-sheet pages per finding (12 rows a page)


@dataclass
class CheckOptions:
    data: str = argument(  # a folder of class sub-folders, of IDX files, a built-in dataset, or a run directory
        help="A folder of class sub-folders (or of IDX files), digits, or a run directory (then its split is checked "
        "for leakage too)")
    backbone: Optional[str] = option(  # a .tflite image classifier or feature extractor (None: a run's own, if any)
        None, kind=Path, show_default="a run's own backbone, else none",
        help="A pretrained .tflite image classifier or feature extractor: its embeddings add label-issue "
        "candidates, outliers and look-alike duplicates (cached with train --backbone's)")
    embedding_tensor: Optional[str] = option(None, help="With --backbone: the tensor to read",
                                             show_default="the input of the last FULLY_CONNECTED")
    report_dir: Optional[str] = option(  # None: RUN/datacheck, or runs/<name>-datacheck
        None, flags=("--report",), kind=Path, show_default="RUN/datacheck, or runs/<folder>-datacheck",
        help="Folder for datacheck.md, datacheck.json and the contact sheets")
    review: Optional[str] = option(  # a new folder to link the flagged images into, a folder per finding
        None, kind=Path,
        help="A new folder to link the flagged images into, a folder per finding (your files are never moved)")
    threads: Optional[int] = threads_option()
    seed: int = option(0, help="Seed of the label check's folds")
    max_pages: int = option(DEFAULT_MAX_PAGES, help="Contact-sheet pages per finding (12 rows a page)")
    as_json: bool = option(False, flags=("--json",), toml=False,
                           help="Print the JSON report on stdout instead of the summary")
    cache: bool = option(True, command_line=False)  # embeddings cached with the transfer route's


def validate(options: CheckOptions) -> None:
    """Each option's bounds (edgecls.options.check), then what involves several."""
    check(options)
    if options.embedding_tensor and not options.backbone:
        raise EdgeclsError("--embedding-tensor needs --backbone FILE.tflite")
