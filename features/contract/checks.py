"""The data contract: the two input tables and the checks every row must pass.

Checks are written as SQL predicates so one scan of the raw table finds every problem of every
row; that keeps validation linear even for tens of millions of events.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from features.contract.codebook import Codebook, Item
from features.contract.vocabulary import DISTRICTS, EVENT_TYPES, SEXES, SUBSTANCES
from features.core.errors import ContractError

# One date policy for every path (the registry, the API, rosters): no date before this, none
# after the data's reference date.
EARLIEST = dt.date(1900, 1, 1)


def as_of_problem(as_of: dt.date, reference: dt.date) -> str | None:
    """Why an as_of cannot be scored, or None."""
    if as_of > reference:
        return f"after the data's reference date {reference}"
    if as_of < EARLIEST:
        return f"before {EARLIEST}"
    return None


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    required: bool  # a null is an error
    description: str


PERSON_COLUMNS: tuple[Column, ...] = (
    Column("person_id", "VARCHAR", True, "pseudonymous id, unique"),
    Column("birth_date", "DATE", True, "date of birth"),
    Column("sex", "VARCHAR", False, f"one of {', '.join(SEXES)}; empty if unknown"),
    Column(
        "district",
        "VARCHAR",
        False,
        "district or county code where first registered (later moves are district_move "
        "events); empty if unknown",
    ),
    Column(
        "ethnicity",
        "VARCHAR",
        False,
        "protected attribute: kept for fairness audits only, never a model feature",
    ),
    Column("registration_date", "DATE", False, "first registered as a drug user; empty if never"),
    Column("primary_substance", "VARCHAR", False, "substance code; empty if never registered"),
)

EVENT_COLUMNS: tuple[Column, ...] = (
    Column("person_id", "VARCHAR", True, "a person_id of the persons table"),
    Column("event_time", "TIMESTAMP", True, "when it happened"),
    Column("event_type", "VARCHAR", True, "one of the vocabulary below"),
    Column("value", "DOUBLE", False, "number, meaning set by the event type"),
    Column("detail", "VARCHAR", False, "text, meaning set by the event type"),
    Column(
        "recorded_time",
        "TIMESTAMP",
        False,
        "optional: when the registry learned of it; features only see events recorded before as_of",
    ),
)

OPTIONAL_COLUMNS = {"recorded_time"}


def require_columns(where: str, columns: tuple[Column, ...], have: list[str]) -> None:
    """A table must have every required column of the contract; optional ones may be absent."""
    missing = [c.name for c in columns if c.name not in have and c.name not in OPTIONAL_COLUMNS]
    if missing:
        raise ContractError(
            f"{where}: missing column(s) {', '.join(missing)} "
            f"(expected {', '.join(c.name for c in columns)})"
        )


# the optional persons column that dates the persons file's answers (a survey's day, a school
# enrolment, a trial's randomisation); without it they are dated the registration_date,
# which in this contract means registration as a drug user, and so a young person's answers
# need it
ANSWERS_DATE = "answers_date"


def declared_columns(where: str, have: list[str], codebook: Codebook) -> list[str]:
    """A persons table's columns beyond the contract: each must be an item of the codebook,
    whose answers are assessments dated `answers_date` or else the registration; any other
    is refused, never ignored."""
    names = {c.name for c in PERSON_COLUMNS} | {ANSWERS_DATE}
    codes = {i.code for i in codebook.items}
    extra = [c for c in have if c not in names]
    undeclared = [c for c in extra if c not in codes]
    if undeclared:
        raise ContractError(
            f"{where}: column(s) {', '.join(undeclared)} are not part of the data contract. "
            "Declare each in codebook.csv as an item (its answers then become assessment "
            f"events dated the person's {ANSWERS_DATE}, or else registration_date), or drop it "
            "from the file."
        )
    return extra


def problem_list(checks: list[str]) -> str:
    """The checks as one SQL list of the reasons that apply to a row `r` (DuckDB's dialect)."""
    return "list_filter([" + ", ".join(checks) + "], lambda x: x IS NOT NULL)"


def _quoted(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _parse_check(col: Column) -> str:
    return (
        f"CASE WHEN r.{col.name} IS NOT NULL AND TRY_CAST(r.{col.name} AS {col.sql_type}) IS NULL "
        f"THEN '{col.name}: cannot parse ' || CAST(r.{col.name} AS VARCHAR) || "
        f"' as {col.sql_type.lower()}' END"
    )


def _missing_check(col: Column) -> str:
    return (
        f"CASE WHEN r.{col.name} IS NULL OR trim(CAST(r.{col.name} AS VARCHAR)) = '' "
        f"THEN '{col.name}: missing' END"
    )


# What a person id may be: letters, digits, "_", "-", "." and Chinese characters, at most 64.
# The API addresses a person by it in a URL and spreadsheets show it: so nothing a spreadsheet
# would run as a formula, no space, and no length the API cannot take.
PERSON_ID = re.compile("[A-Za-z0-9_.\u4e00-\u9fff-]{1,64}")
# how a missing value is often written, which as an id would make one person of all of them
NOT_AN_ID = ("nan", "null", "none", "na", "n/a", "nil", "undefined", "-")


def _id_check() -> str:
    """A person id that is not one (see PERSON_ID, NOT_AN_ID), named without repeating all
    of it (a 10,000-character id is no help in a message)."""
    pid = "trim(CAST(r.person_id AS VARCHAR))"
    return (
        f"CASE WHEN r.person_id IS NOT NULL AND {pid} <> '' AND lower({pid}) IN "
        f"({_quoted(NOT_AN_ID)}) THEN 'person_id: ' || {pid} || ' is how a missing value is "
        f"written, not an id' WHEN r.person_id IS NOT NULL AND {pid} <> '' AND NOT "
        f"regexp_matches({pid}, '^{PERSON_ID.pattern}$') THEN 'person_id: ' || "
        f"CASE WHEN length({pid}) > 20 THEN left({pid}, 20) || '... (' || "
        f"CAST(length({pid}) AS VARCHAR) || ' characters)' ELSE {pid} END || ' is not an id: "
        f"letters, digits, _ - . or Chinese characters, at most 64' END"
    )


# the most characters any field holds: ids, codes, dates and numbers are short, and a field
# of megabytes is a broken file or an attack, not a registry's data
MAX_FIELD_CHARS = 1_000


def _length_check(col: Column) -> str:
    text = f"CAST(r.{col.name} AS VARCHAR)"
    return (
        f"CASE WHEN length({text}) > {MAX_FIELD_CHARS} THEN '{col.name}: ' || "
        f"CAST(length({text}) AS VARCHAR) || ' characters; a field holds at most "
        f"{MAX_FIELD_CHARS:,}' END"
    )


def _padded_id_check() -> str:
    """An id with surrounding spaces would silently become another person."""
    return (
        "CASE WHEN r.person_id IS NOT NULL AND CAST(r.person_id AS VARCHAR) <> "
        "trim(CAST(r.person_id AS VARCHAR)) THEN 'person_id: ' || "
        "'has leading or trailing whitespace' END"
    )


def person_checks() -> list[str]:
    """SQL expressions over `r` (raw persons) yielding a reason string or NULL."""
    checks = [_missing_check(c) for c in PERSON_COLUMNS if c.required]
    checks += [_padded_id_check(), _id_check()]
    checks += [_length_check(c) for c in PERSON_COLUMNS if c.name != "person_id"]
    checks += [_parse_check(c) for c in PERSON_COLUMNS if c.sql_type != "VARCHAR"]
    checks += [
        "CASE WHEN r.sex IS NOT NULL AND r.sex NOT IN ("
        + _quoted(SEXES)
        + ") THEN 'sex: unknown code ' || r.sex || ' (allowed: "
        + ", ".join(SEXES)
        + ")' END",
        "CASE WHEN r.district IS NOT NULL AND r.district NOT IN ("
        + _quoted(DISTRICTS)
        + ") THEN 'district: unknown district ' || r.district END",
        "CASE WHEN r.primary_substance IS NOT NULL AND r.primary_substance NOT IN ("
        + _quoted(SUBSTANCES)
        + ") THEN 'primary_substance: unknown substance ' || r.primary_substance END",
        "CASE WHEN TRY_CAST(r.birth_date AS DATE) > $ref "
        "THEN 'birth_date: after the reference date ' || CAST($ref AS VARCHAR) END",
        *(
            f"CASE WHEN TRY_CAST(r.{c} AS DATE) < DATE '{EARLIEST}' "
            f"THEN '{c}: before {EARLIEST}' END"
            for c in ("birth_date", "registration_date")
        ),
        "CASE WHEN TRY_CAST(r.registration_date AS DATE) > $ref "
        "THEN 'registration_date: after the reference date ' || CAST($ref AS VARCHAR) END",
        "CASE WHEN first_row IS NOT NULL AND first_row < r._row "
        "THEN 'person_id: duplicate of row ' || CAST(first_row AS VARCHAR) END",
    ]
    return checks


def event_checks() -> list[str]:
    """SQL expressions over `r`: raw events with the accepted person's `pk` joined on."""
    unvalued = [e.name for e in EVENT_TYPES if not e.valued]
    checks = [_missing_check(c) for c in EVENT_COLUMNS if c.required]
    checks.append(_padded_id_check())
    checks += [_length_check(c) for c in EVENT_COLUMNS if c.name != "person_id"]
    checks += [_parse_check(c) for c in EVENT_COLUMNS if c.sql_type != "VARCHAR"]
    checks.append(
        "CASE WHEN typeof(r.value) = 'VARCHAR' AND (isnan(TRY_CAST(r.value AS DOUBLE)) "
        "OR isinf(TRY_CAST(r.value AS DOUBLE))) "
        "THEN 'value: ' || r.value || ' is not a finite number' END"
    )
    checks += [
        "CASE WHEN r.person_id IS NOT NULL AND r.pk IS NULL AND r.rejected_person "
        "THEN 'person_id: person ' || r.person_id || ' was rejected in the persons file' END",
        "CASE WHEN r.person_id IS NOT NULL AND r.pk IS NULL AND NOT r.rejected_person "
        "THEN 'person_id: unknown person ' || r.person_id END",
        "CASE WHEN r.event_type IS NOT NULL AND r.event_type NOT IN ("
        + _quoted([e.name for e in EVENT_TYPES])
        + ") THEN 'event_type: unknown event type ' || r.event_type END",
        "CASE WHEN TRY_CAST(r.event_time AS TIMESTAMP) >= $ref + INTERVAL 1 DAY "
        "THEN 'event_time: after the reference date ' || CAST($ref AS VARCHAR) END",
        f"CASE WHEN TRY_CAST(r.event_time AS TIMESTAMP) < TIMESTAMP '{EARLIEST}' "
        f"THEN 'event_time: before {EARLIEST}' END",
        "CASE WHEN TRY_CAST(r.recorded_time AS TIMESTAMP) < TRY_CAST(r.event_time AS TIMESTAMP) "
        "THEN 'recorded_time: before event_time' END",
        "CASE WHEN r.event_type IN (" + _quoted(unvalued) + ") AND r.value IS NOT NULL "
        "THEN 'value: event type ' || r.event_type || ' takes no value' END",
    ]
    checks += assessment_checks()
    for e in EVENT_TYPES:
        if e.value_required:
            checks.append(
                f"CASE WHEN r.event_type = '{e.name}' AND r.value IS NULL "
                f"THEN 'value: missing, required for {e.name}' END"
            )
        if e.value_range:
            lo, hi = e.value_range
            checks.append(
                f"CASE WHEN r.event_type = '{e.name}' AND "
                f"NOT (TRY_CAST(r.value AS DOUBLE) BETWEEN {lo} AND {hi}) "
                f"THEN 'value: ' || CAST(r.value AS VARCHAR) || ' outside {lo:g}..{hi:g} "
                f"for {e.name}' END"
            )
        if e.detail_choices:
            checks.append(
                f"CASE WHEN r.event_type = '{e.name}' AND (r.detail IS NULL OR r.detail NOT IN "
                f"({_quoted(e.detail_choices)})) THEN 'detail: ' || coalesce(r.detail, 'empty') "
                f"|| ' is not a kind of {e.name} (allowed: {', '.join(e.detail_choices)})' END"
            )
    return checks


def assessment_checks() -> list[str]:
    """An assessment answer against its item in the codebook, joined onto `r` as cb_code,
    cb_kind, cb_low, cb_high, cb_answers and cb_allows (all NULL for an unknown item)."""
    answer = "TRY_CAST(r.value AS DOUBLE)"
    return [
        "CASE WHEN r.event_type = 'assessment' AND r.detail IS NULL "
        "THEN 'detail: missing, the item code of an assessment' END",
        "CASE WHEN r.event_type = 'assessment' AND r.detail IS NOT NULL AND r.cb_code IS NULL "
        "THEN 'detail: unknown item ' || r.detail || ' (not in the codebook)' END",
        f"CASE WHEN r.cb_kind IN ('numeric', 'ordinal') AND NOT ({answer} BETWEEN r.cb_low "
        "AND r.cb_high) THEN 'value: ' || CAST(r.value AS VARCHAR) || ' outside ' || "
        "r.cb_allows || ' for item ' || r.detail END",
        f"CASE WHEN r.cb_kind = 'ordinal' AND {answer} <> round({answer}) THEN 'value: ' || "
        "CAST(r.value AS VARCHAR) || ' is not a level of the ordinal item ' || r.detail END",
        f"CASE WHEN r.cb_kind = 'categorical' AND NOT list_contains(r.cb_answers, {answer}) "
        "THEN 'value: ' || CAST(r.value AS VARCHAR) || ' is not an answer to item ' || "
        "r.detail || ' (allowed: ' || r.cb_allows || ')' END",
    ]


def answers_date_sql(dated: bool, row: str = "r") -> str:
    """SQL for the day a persons row's answers were given: its answers_date where the file
    has that column and the row a value, else its registration_date."""
    registration = f"TRY_CAST({row}.registration_date AS DATE)"
    if not dated:
        return registration
    return f"coalesce(TRY_CAST({row}.{ANSWERS_DATE} AS DATE), {registration})"


def registration_answer_checks(items: list[Item], dated: bool = False) -> list[str]:
    """SQL over `r` (raw persons): a persons column a codebook declares holds that item's
    answer; it must be one the item allows, and answers_date (when the file has it) or
    registration_date must date it. `dated`: the file has an answers_date column."""
    checks = []
    if dated:
        checks.append(
            f"CASE WHEN r.{ANSWERS_DATE} IS NOT NULL AND TRY_CAST(r.{ANSWERS_DATE} AS DATE) IS "
            f"NULL THEN '{ANSWERS_DATE}: cannot parse ' || CAST(r.{ANSWERS_DATE} AS VARCHAR) || "
            f"' as a date' WHEN TRY_CAST(r.{ANSWERS_DATE} AS DATE) > $ref THEN '{ANSWERS_DATE}: "
            "after the reference date ' || CAST($ref AS VARCHAR) END"
        )
    for i in items:
        col, answer = f"r.{i.code}", f"TRY_CAST(r.{i.code} AS DOUBLE)"
        said = f"'{i.code}: ' || {col}"
        checks.append(
            f"CASE WHEN {col} IS NOT NULL AND {answers_date_sql(dated)} IS NULL "
            f"THEN '{i.code}: an answer needs its date: {ANSWERS_DATE}"
            + (" (empty here)" if dated else " (no such column)")
            + " or registration_date' END"
        )
        if i.kind == "categorical":
            allowed = ", ".join(f"{a!r}" for a in sorted(i.answers))
            checks.append(
                f"CASE WHEN {col} IS NOT NULL AND NOT coalesce(list_contains([{allowed}], "
                f"{answer}), false) THEN {said} || ' is not an answer to item {i.code} "
                f"(allowed: {i.allows()})' END"
            )
            continue
        checks.append(
            f"CASE WHEN {col} IS NOT NULL AND {answer} IS NULL THEN {said} || ' is not a number' "
            f"WHEN {answer} NOT BETWEEN {i.low} AND {i.high} THEN {said} || ' outside "
            f"{i.allows()} for item {i.code}' "
            + (
                f"WHEN {answer} <> round({answer}) THEN {said} || ' is not a level of the "
                f"ordinal item {i.code}' "
                if i.kind == "ordinal"
                else ""
            )
            + "END"
        )
    return checks


def contract_digest() -> str:
    """A digest of the contract itself (columns and their checks, the event vocabulary): two
    runs whose data passed different contracts measured different things."""
    text = "\n".join([*person_checks(), *event_checks(), *(repr(c) for c in PERSON_COLUMNS)])
    text += "\n".join(repr(c) for c in EVENT_COLUMNS) + repr(EVENT_TYPES)
    return "contract:" + hashlib.sha256(text.encode()).hexdigest()[:16]
