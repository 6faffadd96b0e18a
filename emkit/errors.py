"""User-facing errors: one line that names the problem and the fix, exit code 2."""

from __future__ import annotations

from pathlib import Path


class EmkitError(Exception):
    """A mistake the user can fix. The CLI prints it as one line, without a traceback."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None, where: str | Path | None = None,
                 line: int | None = None) -> None:
        self.problem, self.fix, self.where, self.line = problem, fix, where, line
        super().__init__(self.one_line())

    def one_line(self) -> str:
        place = ""
        if self.where is not None:
            place = f"{self.where}:{self.line}: " if self.line is not None else f"{self.where}: "
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{place}{self.problem}{fix}"
