"""What `edgecls data check` is asked to do: CheckOptions, and its check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgecls.errors import EdgeclsError

DEFAULT_MAX_PAGES = 5  # contact-sheet pages per finding (12 rows a page)


@dataclass
class CheckOptions:
    target: str  # a folder of class sub-folders, a folder of IDX files, a built-in dataset, or a run directory
    backbone: Optional[str] = None  # a .tflite image classifier or feature extractor (None: a run's own, if any)
    embedding_tensor: Optional[str] = None
    report_dir: Optional[str] = None  # None: RUN/datacheck, or runs/<name>-datacheck
    review: Optional[str] = None  # a new folder to link the flagged images into, a folder per finding
    threads: Optional[int] = None
    seed: int = 0  # the folds of the label check
    max_pages: int = DEFAULT_MAX_PAGES
    cache: bool = True  # embeddings cached with the transfer route's


def validate(options: CheckOptions) -> None:
    if options.threads is not None and options.threads < 1:
        raise EdgeclsError(f"--threads must be at least 1 (got {options.threads})")
    if options.max_pages < 0:
        raise EdgeclsError(f"--max-pages must be 0 or more (got {options.max_pages})")
    if options.embedding_tensor and not options.backbone:
        raise EdgeclsError("--embedding-tensor needs --backbone FILE.tflite")
