"""The device boundary as an allowlist: what runtime/, bench/, reports/ and transport/ may import — edgecls
modules and third-party packages, read from the source with `ast` — and, followed through every
edgecls module they reach, nothing of the workstation side (train/, export/, transfer/, explain/,
cli/) ever. A new import that is on no list fails here with its file and line: put it on the
list only if a device can run it (numpy, Pillow and LiteRT, no TensorFlow).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgecls"

# The bottom floor every device-side module may use.
BASE = {"edgecls", "edgecls.errors", "edgecls.files", "edgecls.native_stderr", "edgecls.options",
        "edgecls.parsing", "edgecls.provenance", "edgecls.records", "edgecls.text",
        "edgecls.jsonio", "edgecls.bounds", "edgecls.cache"}  # strict JSON; option ranges; the cache folder
ALLOWED = {
    "runtime": {
        "edgecls": BASE | {"edgecls.runtime", "edgecls.atomic"},  # atomic: predict --collect's pictures (stdlib)
        "packages": {"numpy", "PIL", "flatbuffers", "ai_edge_litert", "tflite_runtime"},
        # imported inside the one function that needs them, in these files only
        "lazily": {"cv2": {"capture.py"}, "picamera2": {"capture.py"},
                   "tensorflow": {"interpreter.py", "metadata.py"}},  # the last-resort interpreter / schema
    },
    "transport": {
        "edgecls": BASE | {"edgecls.transport", "edgecls.runtime.doctor"},
        "packages": set(),
        "lazily": {},
    },
    "reports": {  # the `edgecls bench` command itself runs on a device, over bench
        "edgecls": BASE | {"edgecls.reports", "edgecls.bench", "edgecls.runtime", "edgecls.transport",
                           "edgecls.reporter", "edgecls.atomic", "edgecls.plotting", "edgecls.console",
                           "edgecls.tables",
                           "edgecls.rundir", "edgecls.data"},  # bench compare RUN RUN2: runs read as bench reads one
        "packages": {"numpy", "rich"},
        "lazily": {},
    },
    "bench": {
        "edgecls": BASE | {"edgecls.bench", "edgecls.runtime", "edgecls.transport", "edgecls.reporter",
                           "edgecls.atomic", "edgecls.parsing", "edgecls.plotting", "edgecls.tomlio",
                           "edgecls.console", "edgecls.tables", "edgecls.artifacts", "edgecls.rundir",
                           "edgecls.data", "edgecls.duplicates",  # a run's train/test near-duplicates (numpy, Pillow)
                           "edgecls.retraining"},  # a run of train --from RUN --add reads its added folders back
        "packages": {"numpy", "PIL", "rich"},
        "lazily": {},
    },
}
# What the edgecls modules the device side reaches (rundir, data, console, ...) may import in turn.
REACHABLE = set().union(*(rules["edgecls"] for rules in ALLOWED.values()))
WORKSTATION = ("edgecls.train", "edgecls.export", "edgecls.transfer", "edgecls.explain", "edgecls.cli",
               "edgecls.entry", "edgecls.live", "edgecls.search")


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at module level?) of every import in `path`; type-only imports left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
        node.test) for n in ast.walk(node)}
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno, id(node) in top))
    return found


def _within(module: str, allowed: set[str]) -> bool:
    return any(module == name or module.startswith(name + ".") for name in allowed
               if name != "edgecls") or module == "edgecls"


def _file_of(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_the_device_side_imports_only_what_its_allowlist_names(package):
    rules = ALLOWED[package]
    wrong = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for module, line, at_top in imports(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line}: {module}"
            if top == "edgecls":
                if not _within(module, rules["edgecls"]):
                    wrong.append(where)
            elif top in sys.stdlib_module_names or top == "__future__" or top in rules["packages"]:
                continue
            elif path.name in rules["lazily"].get(top, ()):
                if at_top:
                    wrong.append(f"{where} (only inside the function that needs it)")
            else:
                wrong.append(where)
    assert not wrong, f"{package}/ imports what a device must not need:\n" + "\n".join(wrong)


def test_nothing_the_device_side_reaches_imports_the_workstation_side():
    """Followed through every edgecls module runtime/, bench/ and transport/ import (at module level or
    in a function), no import leads to train/, export/, transfer/, explain/ or the CLI."""
    seen: set[str] = set()
    todo = [".".join(p.relative_to(ROOT).with_suffix("").parts)
            for package in ALLOWED for p in (PACKAGE / package).rglob("*.py")]
    wrong = []
    while todo:
        module = todo.pop().removesuffix(".__init__")
        if module in seen:
            continue
        seen.add(module)
        path = _file_of(module)
        if path is None:
            continue
        for imported, line, _ in imports(path):
            if not imported.startswith("edgecls"):
                continue
            if imported.startswith(WORKSTATION) or not _within(imported, REACHABLE):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {imported}")
            todo.append(imported)
    assert not wrong, "the device side reaches the workstation side:\n" + "\n".join(wrong)
    assert "edgecls.rundir" in seen and "edgecls.data" in seen  # the walk really went past the packages


def test_the_allowlist_check_catches_a_workstation_import(tmp_path, monkeypatch):
    """The check itself: a bench module that imported train.quality would be named."""
    fake = tmp_path / "edgecls" / "bench"
    fake.mkdir(parents=True)
    (fake / "sneaky.py").write_text("from edgecls.train.quality import assess\nimport torch\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "edgecls")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match=r"sneaky.py:1: edgecls.train.quality[\s\S]*sneaky.py:2: torch"):
        test_the_device_side_imports_only_what_its_allowlist_names("bench")


# ---------------------------------------------------------------------- one way, the whole package
def _edgecls_imports(path: Path) -> set[str]:
    """The edgecls modules `path` imports (module level or in a function; type-only imports left out):
    `from edgecls.bench import accuracy` is edgecls.bench.accuracy, `from edgecls.bench import X` of a
    name is the package edgecls.bench."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(
        node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {f"{node.module}.{alias.name}" if _file_of(f"{node.module}.{alias.name}") else node.module
                      for alias in node.names}
    return {name for name in found if name.startswith("edgecls") and _file_of(name)}


def _module_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = _edgecls_imports(path) - {name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while True:
                other = stack.pop()
                part.append(other)
                if other == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package(module: str) -> str:
    """edgecls.bench for edgecls.bench.latency; a top-level module (edgecls.rundir) is its own."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else module


def test_no_import_circle_but_type_only_ones_between_modules_or_packages():
    """Imports run one way: no module imports, through others, one that imports it (an import under
    TYPE_CHECKING is no dependency), and no package (bench/, audit/, ...) does either, so a lower
    package never reaches up to a higher one (bench -> audit -> transfer -> ... -> bench crept in once)."""
    graph = _module_graph()
    assert "edgecls.bench.measure" in graph["edgecls.reports.job"]  # the graph is really read
    assert _circles(graph) == [], "modules that import each other (lazily too): " + repr(_circles(graph))
    packages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        packages.setdefault(_package(module), set()).update(_package(other) for other in imported
                                                             if _package(other) != _package(module))
    circles = _circles(packages)
    ties = [f"{module} -> {other}" for circle in circles for module, imported in graph.items()
            if _package(module) in circle for other in imported
            if _package(other) in circle and _package(other) != _package(module)]
    assert circles == [], "packages that import each other:\n" + "\n".join(ties)


def test_bench_stays_under_its_line_budget():
    """bench/ is the measuring library, not a quarter of the package: what other commands also use (the
    transport to devices, labels matching, the run's records) lives below it. Unguarded, it crept from
    2,990 lines to 3,043 in one round of fixes."""
    lines = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (PACKAGE / "bench").glob("*.py")}
    assert len(lines) > 10  # the package is really read
    assert sum(lines.values()) < 3000, f"bench/ has {sum(lines.values())} lines: {sorted(lines.items())}"
