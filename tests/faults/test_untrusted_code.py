"""Code that must never run: nothing from the working directory, no pickle, no unsafe deserialisation,
no eval/exec anywhere in the package."""

from __future__ import annotations

import re

from faultkit import MODEL, ROOT, png


def test_the_memory_probe_never_runs_code_from_the_working_directory(tmp_path, monkeypatch):
    from edgecls.bench.memory import peak_rss

    for module in ("json", "numpy", "edgecls"):  # shadow what the probe imports
        (tmp_path / f"{module}.py").write_text("raise SystemExit('ran ' + __name__ + ' from the working folder')")
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "x.png"
    image.write_bytes(png())
    found = peak_rss(MODEL, image, 1, "litert")
    assert "error" not in found, found
    assert found["top1"] is not None and found["heavy_modules"] == []


def test_no_pickle_no_unsafe_loading_anywhere_in_the_package():
    source = "\n".join(p.read_text() for p in (ROOT / "edgecls").rglob("*.py"))
    assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", source, re.M)
    assert "allow_pickle=True" not in source
    assert "safe_mode=False" not in source and "enable_unsafe_deserialization" not in source
    assert not re.search(r"\beval\(|\bexec\(", source)
