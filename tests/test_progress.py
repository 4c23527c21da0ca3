"""Progress bars: redrawn in place on a terminal, whole lines at most every few seconds in a
log file (CI, ``> log``)."""

from __future__ import annotations

import io

import latentplay.utils.progress as P


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_few_whole_lines_not_every_update() -> None:
    log = io.StringIO()
    bar = P.progress_bar(total=5000, desc="collect", unit="frame", file=log)
    assert isinstance(bar, P.LogLines)
    for i in range(5000):
        bar.update(1)
        if i % 100 == 0:
            bar.set_postfix(loss=1.0 / (i + 1))  # as the trainer does: not a line each
    bar.close()
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    assert 1 <= len(lines) <= 3, lines  # the start, perhaps one in between, the end
    assert "5000/5000" in lines[-1] and lines[-1].startswith("collect")


def test_a_log_line_is_written_once_the_interval_has_passed(monkeypatch) -> None:
    monkeypatch.setattr(P, "LOG_EVERY_S", 0.0)
    log = io.StringIO()
    with P.progress_bar(total=4, desc="train", file=log) as bar:
        for _ in range(4):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert [line.split("|")[0].split(":")[1].strip() for line in lines][-1] == "100%"
    assert len(lines) >= 4


def test_a_bar_that_does_not_stay_leaves_its_last_line_and_no_empty_ones() -> None:
    log = io.StringIO()
    for _ in P.progress_bar(range(3), desc="queries", leave=False, file=log):
        pass
    lines = log.getvalue().splitlines()
    assert all(line.strip() for line in lines) and "3/3" in lines[-1]


def test_a_terminal_gets_the_redrawn_bar() -> None:
    term = _Terminal()
    bar = P.progress_bar(total=3, file=term)
    assert not isinstance(bar, P.LogLines)
    bar.update(3)
    bar.close()
    assert "\r" in term.getvalue()


def test_a_message_between_updates_leaves_no_carriage_returns_in_a_log() -> None:
    log = io.StringIO()
    with P.progress_bar(total=2, desc="queries", file=log) as bar:
        bar.update(1)
        P.write_line("skipped query q/s1: off the table")
        bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and "skipped query q/s1: off the table" not in text  # stdout
