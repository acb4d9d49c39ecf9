"""edgecls.reporter: the one Reporter every job takes — its lines, and the bars drawn on stderr."""

from __future__ import annotations

from edgecls.reporter import SILENT, Reporter


def test_lines_go_where_the_reporter_sends_them_and_bars_never_reach_them(capsys):
    lines: list[str] = []
    reporter = Reporter(lines.append, bars=True)
    reporter("Scoring 3 models")
    assert list(reporter.track(iter(range(5)), "decoding", total=5)) == [0, 1, 2, 3, 4]
    with reporter.task("candidates", 3) as advance:
        advance(0, "int8 ...")
        advance(1, "int8 done")
        advance(2)
    assert lines == ["Scoring 3 models"]
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays the result: bars are drawn on stderr only


def test_without_bars_nothing_is_drawn_and_silent_says_nothing(capsys):
    lines: list[str] = []
    plain = Reporter(lines.append, bars=False)
    assert list(plain.track([1, 2], "x")) == [1, 2]
    with plain.task("y", 2) as advance:
        advance(2, "done")
    SILENT("nothing")
    assert list(SILENT.track([3], "z")) == [3]
    assert capsys.readouterr() == ("", "") and lines == []
    assert plain.quiet().bars is False and Reporter(lines.append, bars=True).quiet().lines == lines.append


def test_the_default_writes_lines_to_stderr(capsys):
    Reporter(bars=False)("a line")
    assert capsys.readouterr() == ("", "a line\n")
