"""Readable progress for a local run: kfp.local's console output, filtered, plus a full log file.

kfp.local prints every task's executor input and output as JSON and a warning per task about
settings that only apply on a cluster; a newcomer needs the task boundaries, the stages' progress
lines and the errors. Everything still goes, unfiltered, to the log file.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from components.shared import settings

_DROP = re.compile(
    r"\[KFP Executor|Streamed logs:|_warn_local_only_noops|warnings\.warn\(|have no effect in the current local runner"
    r"|non-Python base image|mlflow\.store\.db\.utils|Writing model shards|Loading weights|model card could not be retrieved"
    r"|Unable to find license information|^\s*(\[\])?\s*$"
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    """Text without terminal colour codes (kfp.local colours task names in its messages)."""
    return _ANSI.sub("", text)


class FilteredConsole(io.TextIOBase):
    """A stdout stand-in: whole lines to the log file, the useful ones to the real console (all
    of them when verbose), every credential from the environment masked in both (MLflow and
    the stages may print a tracking URI with user:password, or a token in an error)."""

    def __init__(self, console, log_file, verbose: bool = False):
        self.console, self.log, self.buf, self.skip_until, self.verbose = console, log_file, "", None, verbose
        self.secrets = settings.secrets()  # read once: the environment does not change during a run

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.buf += text
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            line = settings.redact(line, self.secrets)
            self.log.write(line + "\n")
            if self.keep(line):
                self.console.write(line + "\n")
        return len(text)

    def keep(self, line: str) -> bool:
        if self.verbose:
            return True
        plain = _ANSI.sub("", line)
        if self.skip_until is not None:  # inside a JSON dump or an outputs listing
            if self.skip_until.match(plain):
                self.skip_until = None
            return False
        if "Got executor_input:" in plain:
            self.skip_until = re.compile(r"^ {4}\}\s*$")
            return False
        if re.search(r"Task .* outputs:$", plain):
            self.skip_until = re.compile(r"^-{20,}")
            return False
        return not _DROP.search(plain)

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()

    def close_line(self) -> None:
        """Write out a last line that has no newline."""
        if self.buf:
            self.write("\n")


@contextlib.contextmanager
def filtered_console(log_path: Path, verbose: bool = False) -> Iterator[None]:
    """Route stdout through FilteredConsole (everything when verbose) and keep the full log at
    `log_path`, credentials masked in both."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(have no effect in the current local runner|non-Python base image).*")
        stream = FilteredConsole(sys.stdout, log, verbose)
        try:
            with contextlib.redirect_stdout(stream):
                yield
        finally:
            stream.close_line()
            stream.flush()
