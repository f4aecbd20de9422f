"""A dataset's codebook: the structured questions its `assessment` events answer.

Registries and clinics record many coded answers the fixed event vocabulary cannot name
(intake interviews, school health surveys, risk assessments). An `assessment` event carries one
answer: the item's code in `detail`, the answer in `value`. The codebook (`codebook.csv` beside
the persons and events) declares each item once: its code, its English and Chinese label (the
Chinese may be left empty for an imported dataset: the English one is shown), its
kind (numeric, ordinal or categorical), the range or the allowed answers, and the agreed risk
direction where there is one. The data contract checks every answer against it: an unknown
code or an answer outside what the item allows is a named reject, as any other contract
breach.

The file's columns: code, label_en, label_zh, kind, min, max, values, direction. `values` lists
a categorical item's answers as `1=yes;2=no` (answer = label); `min` and `max` bound a numeric or
ordinal one; `direction` is +1 (a higher answer never lowers risk), -1, or empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.core.errors import ContractError, Problem
from features.core.io import read_text_table

FILE = "codebook.csv"
KINDS = ("numeric", "ordinal", "categorical")
COLUMNS = ("code", "label_en", "label_zh", "kind", "min", "max", "values", "direction")
CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")  # it names features: plain, short, lower case


@dataclass(frozen=True)
class Item:
    code: str
    label_en: str
    label_zh: str
    kind: str
    low: float | None = None
    high: float | None = None
    # a categorical item's answers, each with its label
    answers: dict[float, str] = field(default_factory=dict)
    direction: int = 0

    def allows(self) -> str:
        """What the item accepts, as a reject message says it."""
        if self.kind == "categorical":
            return ", ".join(f"{a:g}" for a in self.answers)
        return f"{self.low:g}..{self.high:g}"


@dataclass(frozen=True)
class Codebook:
    items: tuple[Item, ...]
    source: str = FILE

    def __len__(self) -> int:
        return len(self.items)

    def item(self, code: str) -> Item:
        return next(i for i in self.items if i.code == code)

    def rows(self) -> pd.DataFrame:
        """The codebook as its file's rows (all text): what `parse_codebook` reads back."""

        def num(x: float | None) -> str:
            return "" if x is None else f"{x:g}"

        return pd.DataFrame(
            [
                {
                    "code": i.code,
                    "label_en": i.label_en,
                    "label_zh": i.label_zh,
                    "kind": i.kind,
                    "min": num(i.low),
                    "max": num(i.high),
                    "values": ";".join(f"{a:g}={label}" for a, label in i.answers.items()),
                    "direction": {1: "+1", -1: "-1"}.get(i.direction, ""),
                }
                for i in self.items
            ],
            columns=list(COLUMNS),
        )

    def frame(self) -> pd.DataFrame:
        """One row per item for the contract's SQL: code, kind, bounds, allowed answers."""
        return pd.DataFrame(
            {
                "code": [i.code for i in self.items],
                "kind": [i.kind for i in self.items],
                "low": [i.low for i in self.items],
                "high": [i.high for i in self.items],
                "answers": [sorted(i.answers) or None for i in self.items],
                "allows": [i.allows() for i in self.items],
            }
        )


def find_codebook(data_dir: Path) -> Path | None:
    path = Path(data_dir) / FILE
    return path if path.is_file() else None


def read_codebook(path: Path) -> Codebook:
    """The codebook, or a ContractError naming every bad row and column."""
    return parse_codebook(read_text_table(path, "the codebook", COLUMNS), str(path))


def parse_codebook(raw: pd.DataFrame, source: str) -> Codebook:
    """A codebook from its rows as text (a file's or a database table's); `source` names
    where they came from in every message."""
    name = Path(source).name if "://" not in source else source
    items: list[Item] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for row, rec in enumerate(raw.to_dict("records"), 1):
        item, found = _item(rec)
        problems += [Problem(name, row, column, why) for column, why in found]
        if item.code in seen:
            problems.append(Problem(name, row, "code", f"duplicate of row {seen[item.code]}"))
        seen.setdefault(item.code, row)
        items.append(item)
    if problems:
        raise ContractError(
            f"{source}: {len({p.row for p in problems})} codebook row(s) are not usable:",
            problems[:20],
            len(problems),
        )
    return Codebook(tuple(items), source)


def _number(text: str) -> float | None:
    try:
        return float(text) if text.strip() else None
    except ValueError:
        return None


def _item(rec: dict[str, str]) -> tuple[Item, list[tuple[str, str]]]:
    """An item and the problems of its row, as (column, reason)."""
    found: list[tuple[str, str]] = []
    code, kind = rec["code"].strip(), rec["kind"].strip()
    if not CODE.fullmatch(code):
        found.append(("code", f"{code!r} is not a code (lower-case letters, digits, _)"))
    if not rec["label_en"].strip():
        found.append(("label_en", "missing"))
    if kind not in KINDS:
        found.append(("kind", f"{kind!r} is not one of {', '.join(KINDS)}"))
    low, high, answers = _number(rec["min"]), _number(rec["max"]), {}
    if kind in ("numeric", "ordinal"):
        if low is None or high is None or low > high:
            got = f"{rec['min']!r}, {rec['max']!r}"
            found.append(("min", f"a {kind} item needs min <= max (got {got})"))
    elif kind == "categorical":
        for part in [p for p in rec["values"].split(";") if p.strip()]:
            answer, _, label = part.partition("=")
            number = _number(answer)
            if number is None or not label.strip():
                found.append(("values", f"{part!r} is not answer=label"))
            else:
                answers[number] = label.strip()
        if not answers and not any(c == "values" for c, _ in found):
            found.append(("values", "a categorical item needs its answers, as 1=yes;2=no"))
    direction = rec["direction"].strip()
    if direction not in ("", "+1", "1", "-1"):
        found.append(("direction", f"{direction!r} is not +1, -1 or empty"))
    item = Item(
        code,
        rec["label_en"].strip(),
        # an imported dataset may have English labels only: the Chinese falls back to the
        # English one, and the model card names the items shown so
        rec["label_zh"].strip() or rec["label_en"].strip(),
        kind,
        low,
        high,
        answers,
        int(direction) if direction in ("+1", "1", "-1") else 0,
    )
    return item, found
