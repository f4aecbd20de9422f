"""What went wrong, by kind: every user-facing failure is one of these, never a traceback.

The kind tells the reader where to look: their own arguments and files (`InputError`), the
rows of their data (`ContractError`), a config file (`ConfigError`) or the model registry's
state (`RegistryError`). Commands turn any `SunshineError` into a message and exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    row: int  # 1-based data row; in CSV files the line number is row + 1 (the header)
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: row {self.row}: {self.column}: {self.reason}"


class SunshineError(Exception):
    """A failure whose message is meant for the user, with the problems that caused it."""

    def __init__(self, message: str, problems: list[Problem] | None = None, total: int = 0):
        super().__init__(message)
        self.problems = problems or []
        self.total = total

    def __str__(self) -> str:
        lines = [self.args[0]]
        lines += [f"  {p}" for p in self.problems]
        if self.total > len(self.problems):
            lines.append(f"  ... and {self.total - len(self.problems)} more")
        return "\n".join(lines)


class InputError(SunshineError):
    """An argument, option or file the user named cannot be used as given."""


class ContractError(SunshineError):
    """Rows of the data break the data contract; `problems` names file, row, field, reason."""


class ConfigError(SunshineError):
    """A configuration file (task config, interventions, tokens) is missing or malformed."""


class RegistryError(SunshineError):
    """The model registry is not in the state the command needs (no champion, no version)."""
