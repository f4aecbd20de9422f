"""What a roster run is asked to do: the roster, the task, the output and the settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from features.contract.vocabulary import LANGS
from features.core.errors import InputError
from serving.batch.roster_io import check_format, check_roster

EXPLAIN_MODES = ("top3", "top", "none")


@dataclass
class RosterJob:
    roster: Path
    task: str
    out: Path
    as_of: dt.date | None = None
    lang: str = "en"
    explain: str = "top3"
    resume: bool = False
    chunk_rows: int = 50_000
    include_out_of_cohort: bool = False

    def __post_init__(self) -> None:
        """Settings and the roster's header are checked when the job is made, before the
        model and the registry are loaded, so a mistake fails in a moment."""
        if self.explain not in EXPLAIN_MODES:
            raise InputError(f"--explain must be one of {', '.join(EXPLAIN_MODES)}")
        if self.lang not in LANGS:
            raise InputError(f"--lang must be one of {', '.join(LANGS)}")
        check_roster(self.roster)
        check_format(self.out, "output")
