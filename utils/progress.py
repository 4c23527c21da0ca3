"""Progress bars for a terminal and for a log file alike.

On a terminal (or in a notebook) a bar redraws itself in place as tqdm does. When the output
is a file or a pipe (CI, ``> log``), a redraw is a carriage return that piles up on one line
of the log, hundreds of times; there the bar writes a plain line at most every
``LOG_EVERY_S`` seconds instead, and its last state when it closes.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm as plain_tqdm
from tqdm.auto import tqdm as auto_tqdm

LOG_EVERY_S = 10.0


class LogLines(plain_tqdm):
    """tqdm writing whole lines, at most every ``LOG_EVERY_S`` seconds (plus the last)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mininterval", LOG_EVERY_S)
        kwargs["maxinterval"] = max(kwargs.get("maxinterval", LOG_EVERY_S), LOG_EVERY_S)
        kwargs.setdefault("ncols", 100)
        super().__init__(*args, **kwargs)

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> bool:
        """Redraw requests (updates, ``set_postfix``) become a line only once the interval
        since the last line has passed."""
        if time.monotonic() - getattr(self, "_logged_t", -float("inf")) < LOG_EVERY_S:
            return False
        return super().refresh(nolock=nolock, lock_args=lock_args)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        self.fp.write((msg if msg is not None else str(self)).strip("\r") + "\n")
        self.fp.flush()
        self._logged_n, self._logged_t = self.n, time.monotonic()
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to erase in a log (tqdm.write clears bars before printing)."""

    def close(self) -> None:
        """The last state as a line of its own (a log has nothing to clear), then done."""
        if self.disable:
            return
        if getattr(self, "_logged_n", None) != self.n:
            self.display()
        self.disable = True
        self._decr_instances(self)


def _interactive(stream: Any) -> bool:
    if "ipykernel" in sys.modules:  # a notebook draws its own widget
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(*args: Any, **kwargs: Any) -> plain_tqdm:
    """A tqdm bar (same arguments) that suits where it writes: ``file`` (default stderr)."""
    stream = kwargs.get("file") or sys.stderr
    cls = auto_tqdm if _interactive(stream) else LogLines
    return cls(*args, **kwargs)


def write_line(text: str) -> None:
    """A message printed between progress-bar updates without breaking a bar."""
    plain_tqdm.write(text)
