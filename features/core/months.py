"""Month arithmetic on 'YYYY-MM' strings: the programme's indicators are monthly, and monitoring
and the API count months too."""

from __future__ import annotations

import datetime as dt

from features.core.errors import InputError


# -- months --------------------------------------------------------------------------------------
def parse_month(text: str, what: str) -> str:
    try:
        return dt.datetime.strptime(text, "%Y-%m").strftime("%Y-%m")
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a month (YYYY-MM)") from None


def month_start(month: str) -> dt.date:
    return dt.date(int(month[:4]), int(month[5:7]), 1)


def add_months(month: str, by: int) -> str:
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_end(month: str) -> dt.datetime:
    """The month's end: the first instant of the next month, which the month does not hold."""
    return dt.datetime.combine(month_start(add_months(month, 1)), dt.time())


def last_complete_month(reference: dt.date) -> str:
    """The latest month whose last day is on or before the data's reference date."""
    nxt = reference + dt.timedelta(days=1)
    return add_months(nxt.strftime("%Y-%m"), -1)


def month_range(first: str | None, last: str | None, reference: dt.date, default: int = 24):
    """The months asked for, oldest first; by default the last `default` complete months."""
    newest = last_complete_month(reference)
    last = last or newest
    first = first or add_months(last, -(default - 1))
    if last > newest:
        raise InputError(
            f"to {last}: the data's reference date is {reference}, so the latest complete "
            f"month is {newest}"
        )
    if first > last:
        raise InputError(f"from {first} is after to {last}")
    return months_between(first, last)


def months_between(first: str, last: str) -> list[str]:
    """Every month from `first` to `last`, both included, oldest first."""
    months = [first]
    while months[-1] < last:
        months.append(add_months(months[-1], 1))
    return months
