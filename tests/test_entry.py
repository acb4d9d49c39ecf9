"""The console script's lean `predict` path answers exactly as the Typer app does, and stays lean."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgecls import cli, console, entry
from edgecls.runtime.classify import Class, Classifier, Prediction

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "digits-seed" / "model_int8.tflite"
IMAGES = ROOT / "models" / "digits-seed" / "test-images"
FIRST = sorted((IMAGES / "7").iterdir())[0]
SECOND = sorted((IMAGES / "3").iterdir())[0]
_TIMING = re.compile(r"\d+\.\d+ s(, [\d.]+ images/s)?")  # the only part of a run that differs between runs


def _run(main, argv: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["edgecls", *argv])
    with pytest.raises(SystemExit) as stopped:
        main()
    out, err = capsys.readouterr()
    code = stopped.value.code
    return (0 if code is None else code), out, _TIMING.sub("T", err)


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> Path:
    """Images whose names rich would not print as they are ([markup], :emoji:, a backslash), labels likewise."""
    folder = tmp_path_factory.mktemp("odd")
    for name in ("[bold]x.png", "a:cat:b.png", "back\\slash.png", "wide 猫.png"):
        shutil.copy(FIRST, folder / name)
    names = ["zero", "[red]one", ":dog:", "thrée", "四", "five\\", "six", "seven [x]", "eight", "a-very-long-label-9"]
    (folder / "labels.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(names)))
    (folder / "bad.png").write_bytes(b"not a png")
    return folder


def _vectors(odd: Path) -> list[tuple[list[str], bool]]:
    """(argv, whether the lean path takes it). Errors, help and options the lean parser does not
    know must reach the Typer app."""
    m, a, b, labels = str(MODEL), str(FIRST), str(SECOND), str(odd / "labels.txt")
    return [
        (["predict", m, a], True),
        (["predict", m, a, b, "--json"], True),
        (["predict", m, str(IMAGES / "1"), "--csv", "-k", "3"], True),
        (["predict", "--top-k=2", m, a], True),
        (["predict", m, a, "--threads", "1", "--labels", labels, "-k", "4"], True),
        (["predict", m, str(odd), "--labels", labels, "--top-k", "3"], True),
        (["predict", m, str(odd), "--json"], True),
        (["predict", f"./{m}", "--", a], True),
        (["predict", m, a, "--input-range", "0,1"], True),
        (["predict", m, a, "--input-range", "nonsense"], True),
        (["predict", m, a, "--backend", "nope"], True),
        (["predict", m, a, "--json", "--csv"], True),
        (["predict", m, str(odd / "missing.png")], True),
        (["predict", m, str(odd / "bad.png"), a], True),
        (["predict", str(odd / "missing.tflite"), a], True),
        (["predict", labels, a], True),
        (["predict", m, a, "--top-k", "007"], True),
        (["predict", m, a, "--no-unknown"], True),
        (["predict", m, a, b, "--collect", str(odd / "inbox"), "--collect-when", "uncertain<0.999,sample=0.5",
          "--collect-max-mb", "1", "--json"], True),
        (["predict", m, a, "--collect-when", "unknown"], True),  # without --collect: the same one-line error
        (["predict", m, a, "--collect", str(odd / "inbox"), "--collect-when", "sometimes"], True),
        (["predict", m, a, "--collect", str(odd / "inbox"), "--collect-max-mb", "1e3"], False),
        (["predict", m, a, "--top-k", "0"], False),
        (["predict", m, a, "--top-k", "x"], False),
        (["predict", m, a, "-k3"], False),
        (["predict", m, a, "--threads"], False),
        (["predict", m, a, "--labels", ""], False),
        (["predict", m, a, "--labels", "--json"], False),
        (["predict", m, a, "--json", "--json"], False),
        (["predict", m, a, "--json=1"], False),
        (["predict", m, a, "--no-such-option"], False),
        (["predict", m, a, "--help"], False),
        (["predict", m], False),
        (["predict"], False),
        (["--version"], True),
        (["info", m], False),
    ]


def test_lean_and_full_paths_answer_alike(odd, capsys, monkeypatch):
    lean_taken = 0
    for argv, lean in _vectors(odd):
        assert (argv == ["--version"] or entry.predict_arguments(argv) is not None) == lean, argv
        lean_taken += lean
        shutil.rmtree(odd / "inbox", ignore_errors=True)  # each path collects into an empty folder: a picture
        via_entry = _run(entry.main, argv, capsys, monkeypatch)  # already there is not kept again
        shutil.rmtree(odd / "inbox", ignore_errors=True)
        via_typer = _run(cli.main, argv, capsys, monkeypatch)
        assert via_entry == via_typer, argv
    assert lean_taken >= 16


def test_the_table_printed_without_rich_is_the_one_rich_prints(odd, monkeypatch):
    clf = Classifier(MODEL, labels=odd / "labels.txt")
    rows = [Prediction(str(odd / name), tuple(Class(i, clf.labels[i], 0.5 / (i + 1)) for i in (1, 2, 5, 7, 9)))
            for name in ("[bold]x.png", "a:cat:b.png", "back\\slash.png", "wide 猫.png", "plain.png")]
    rows.append(Prediction("broken [x].png", error="corrupt image data: a:b:c \\ [y]"))

    def table(top_k: int) -> str:
        out = io.StringIO()
        write = console._table_writer(out, clf, top_k)
        for row in rows:
            write(Prediction(row.source, row.classes[:top_k], row.error))
        return out.getvalue()

    for top_k in (1, 3, 5):
        lean = table(top_k)
        monkeypatch.setattr(console, "_plain_stream", lambda out: False)  # every line through rich
        assert lean == table(top_k)
        monkeypatch.undo()


def test_lean_predict_imports_no_cli_framework():
    code = (f"import sys\nfrom edgecls.entry import main\nsys.argv = ['edgecls', 'predict', {str(MODEL)!r}, "
            f"{str(FIRST)!r}]\n"
            "try:\n    main()\nexcept SystemExit as stop:\n    assert stop.code == 0, stop.code\n"
            "heavy = {'typer', 'click', 'rich', 'pydantic', 'tensorflow', 'keras', 'concurrent'}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m == 'edgecls.cli'))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_every_package_of_the_source_tree_is_in_the_wheel():
    """pyproject lists the packages by hand (devices/ ships as edgecls.devices): a new sub-package
    left out would import here, from the source tree, and fail only where edgecls is installed."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgecls").rglob("__init__.py")}
    assert found - listed == set(), "add them to [tool.setuptools] packages in pyproject.toml"


@pytest.mark.parametrize("suffix, plugin", [(".png", "PIL.PngImagePlugin"), (".jpg", "PIL.JpegImagePlugin"),
                                            (".bmp", "PIL.BmpImagePlugin")])
def test_a_plain_predict_loads_only_what_it_uses(tmp_path, suffix, plugin):
    """Cold start: one image file loads its own format's Pillow plugin (not Pillow's ~40), and none of
    live input (runtime.stream, runtime.capture), package metadata (importlib.metadata), OpenSSL, the
    options records (runtime.settings: only for --input-range), glob (only for a pattern) or ImageOps
    (only for a rotated photo)."""
    from PIL import Image

    image = tmp_path / f"seven{suffix}"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    code = (f"import sys\nfrom edgecls.entry import main\nsys.argv = ['edgecls', 'predict', {str(MODEL)!r}, "
            f"{str(image)!r}, '--threads', '1']\n"
            "try:\n    main()\nexcept SystemExit as stop:\n    assert stop.code == 0, stop.code\n"
            "unused = {'edgecls.runtime.stream', 'edgecls.runtime.capture', 'importlib.metadata', '_hashlib', 'cv2',\n"
            "          'edgecls.runtime.settings', 'edgecls.options', 'glob', 'PIL.ImageOps'}\n"
            "print(sorted(m for m in sys.modules if m.endswith('ImagePlugin') or m in unused))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str([plugin])
