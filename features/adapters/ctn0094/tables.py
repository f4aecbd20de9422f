"""Finding and reading the CTN-0094 `.rda` files.

The data are public but not ours to redistribute, so they are read in place from a directory the
user names; nothing is copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from features.core.errors import InputError

ENV_VAR = "SUNSHINE_CTN_DIR"
# ../shared beside the working directory, or beside any folder holding this checkout
DEFAULT_DIRS = (
    Path("../shared/data/ctn0094"),
    *(d / "shared/data/ctn0094" for d in Path(__file__).resolve().parents[3:]),
)
TABLES = (
    "everybody",
    "demographics",
    "randomization",
    "uds",
    "visit",
    "tlfb",
    "treatment",
    "withdrawal",
    "detox",
    "asi",
    "rbs_iv",
    "psychiatric",
    "pain",
    "fagerstrom",
    "qol",
    "derived_weeklyOpioidPattern",
)


def find_data_dir(given: Path | None = None) -> Path:
    """--data-dir, else $SUNSHINE_CTN_DIR, else ../shared/data/ctn0094 when it exists."""
    if given is None and os.environ.get(ENV_VAR):
        given = Path(os.environ[ENV_VAR])
    candidates = [given] if given is not None else list(DEFAULT_DIRS)
    for d in candidates:
        if (d / "everybody.rda").exists():
            return d.resolve()
    where = str(given) if given is not None else ", ".join(str(d) for d in DEFAULT_DIRS)
    raise InputError(
        f"no CTN-0094 data at {where}: pass --data-dir or set ${ENV_VAR} to the folder of .rda "
        "files of the public.ctn0094data and public.ctn0094extra R packages"
    )


def read_tables(data_dir: Path) -> dict[str, pd.DataFrame]:
    """Every table the adapter and the outcome use, with categories turned into plain strings."""
    import pyreadr

    out = {}
    for name in TABLES:
        path = data_dir / f"{name}.rda"
        if not path.exists():
            raise InputError(f"{path}: missing; the adapter needs the table {name}")
        try:
            frame = pyreadr.read_r(str(path))[name]
        except (pyreadr.custom_errors.PyreadrError, KeyError) as exc:
            raise InputError(
                f"{path}: not a readable R data file with table {name} ({exc})"
            ) from None
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.CategoricalDtype):
                frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
        who = pd.to_numeric(frame["who"], errors="coerce")
        frame = frame[who.notna()].assign(who=who.dropna().astype("int64"))
        # rows that name no participant cannot be placed; the adapter reports how many
        frame.attrs["rows_without_participant"] = int(who.isna().sum())
        out[name] = frame
    return out
