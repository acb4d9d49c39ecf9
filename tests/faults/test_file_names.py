"""File names a terminal or a strict UTF-8 stream cannot take as they are: undecodable bytes, control
characters, bidi overrides. They are rows like any other, printed safely."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

from faultkit import MODEL, edgecls, encoded, photo, png

from edgecls.text import clean_text


def test_non_utf8_file_name_is_an_ordinary_row(tmp_path, cli):
    name = os.fsdecode(b"caf\xe9-\x1b[31mred.png")  # not UTF-8, and a terminal escape
    (tmp_path / name).write_bytes(encoded(photo(), "PNG"))
    table = cli("predict", MODEL, tmp_path)
    assert table.code == 0 and "\x1b[31m" not in table.out and "caf" in table.out
    as_json = cli("predict", "--json", MODEL, tmp_path)
    assert as_json.code == 0 and json.loads(as_json.out)["classes"]


def test_non_utf8_names_in_error_rows_on_a_strict_utf8_stdout(tmp_path):
    """--json and --csv rows whose error reason quotes an undecodable name: written as \\xNN, no
    UnicodeEncodeError (PYTHONIOENCODING=utf-8 is strict, as a UTF-8 pipe in some setups is)."""

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "good.png").write_bytes(encoded(photo(), "PNG"))
    os.symlink(tmp_path / "gone.png", folder / os.fsdecode(b"dangling-\xe9.png"))  # "no such file: NAME"
    missing = os.fsdecode(b"missing-\xff.png")  # "no such file or folder: NAME"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    for fmt in ("--json", "--csv"):
        done = subprocess.run([sys.executable, "-m", "edgecls", "predict", fmt, str(MODEL), "photos", missing],
                              capture_output=True, cwd=tmp_path, env=env, timeout=120)
        out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
        assert done.returncode == 1 and "Traceback" not in err and "internal error" not in err, err
        if fmt == "--json":
            errors = {row["file"]: row.get("error") for row in map(json.loads, out.splitlines())}
        else:
            import csv

            errors = {row["file"]: row["error"] for row in csv.DictReader(io.StringIO(out))}
        # each row names its file once, in its file field (the reason does not repeat it)
        assert errors["missing-\\xff.png"] == "no such file or folder"
        assert errors["photos/dangling-\\xe9.png"] == "no such file"


def test_control_characters_in_names_never_reach_the_terminal(tmp_path, cli):
    (tmp_path / "x\x07y\x1bcz.png").write_bytes(b"not a picture")  # an error row that quotes nothing
    os.symlink(tmp_path / "gone.png", tmp_path / "d\x07e\x1b[31m.png")  # an error row that quotes the name
    (tmp_path / "good.png").write_bytes(encoded(photo(), "PNG"))
    result = cli("predict", MODEL, tmp_path, str(tmp_path / "no\x07such\x1b.png"))
    assert result.code == 1 and "xycz.png" in result.out and "de[31m.png" in result.out
    assert not {"\x07", "\x1b"} & set(result.out + result.err)


def test_bidi_overrides_never_reach_the_terminal(tmp_path):

    for char in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        assert clean_text(f"ab{char}cd") == "abcd"
    (tmp_path / "invoice\u202egnp.exe.png").write_bytes(png())
    (tmp_path / "\u2067x.png").write_bytes(b"not an image")
    done = edgecls("predict", MODEL, tmp_path, cwd=tmp_path)
    assert done.returncode == 1 and "invoicegnp.exe.png" in done.stdout
    assert not set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069") & set(done.stdout + done.stderr)
