"""Reasons in a caseworker's words, and the caseload's selection: the to-follow-up view, the
follow-ups that count as contacts, sorting and the top actionable reason. Hand-computed
expectations on small frames; no server."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.contract.vocabulary import CODE_LABELS, EVENT_TYPES, code_label
from features.spec import FEATURES, FEATURES_BY_NAME
from features.synth.city import DETAILS
from serving.scoring.reasons import ago, effect, is_background, sentence
from serving.state.caseload import Caseload, Filters, select, top_actionable
from serving.web.i18n import Texts
from training.explain import TopK


@pytest.mark.parametrize(
    ("name", "value", "zh", "en"),
    [
        (
            "urine_test__mean_180d",
            1.0,
            "尿检阳性率（近180天）：100%",
            "positive-test rate, last 180 days: 100%",
        ),
        (
            "urine_test__max_90d",
            1.0,
            "有阳性尿检（近90天）：是",
            "any positive test, last 90 days: yes",
        ),
        ("urine_test__last", 0.0, "最近一次尿检结果：阴性", "last urine test result: negative"),
        ("age_years", 20.81, "年龄：20岁", "age: 20 years old"),
        (
            "checkin_missed__count_90d",
            3.0,
            "未按时报到次数（近90天）：3次",
            "check-ins missed, last 90 days: 3 times",
        ),
        (
            "checkin_missed__count_90d",
            1.0,
            "未按时报到次数（近90天）：1次",
            "check-ins missed, last 90 days: 1 time",
        ),
        (
            "checkin_adherence_90d",
            2 / 3,
            "报到率（近90天）：67%",
            "check-in adherence, last 90 days: 67%",
        ),
        ("family_drug_record__days_since", 1108.0, "最近一次家庭成员有吸毒记录：约3年前", None),
        (
            "days_since_positive_test",
            2.0,
            "最近一次阳性尿检：2天前",
            "last positive test: 2 days ago",
        ),
        (
            "days_since_positive_test",
            None,
            "最近一次阳性尿检：无记录",
            "last positive test: none recorded",
        ),
        ("primary_substance", "ketamine", "主要滥用物质：氯胺酮", "primary substance: ketamine"),
        ("sex", "F", "性别：女", "sex: female"),
        ("methadone_dose__mean_90d", 60.0, "美沙酮服药剂量平均值（近90天）：60毫克", None),
        ("employed_now", 0.0, "目前在业：否", "currently employed: no"),
    ],
)
def test_a_reason_is_said_in_the_words_its_kind_calls_for(name, value, zh, en):
    assert sentence(name, value, "zh") == zh
    if en is not None:
        assert sentence(name, value, "en") == en


def test_a_missing_value_is_said_to_be_missing_where_it_raises_the_risk():
    assert effect(True, None, "zh") == "没有记录使风险升高"
    assert effect(True, float("nan"), "en") == "having no record raises the risk"
    assert effect(True, 3.0, "zh") == "使风险升高" and effect(False, 3.0, "en") == "lowers the risk"


def test_time_ago_moves_from_days_to_months_to_years():
    assert [ago(d, "zh") for d in (0.4, 1, 59, 60, 729, 730, 1108)] == [
        "今天", "1天前", "59天前", "约2个月前", "约24个月前", "约2年前", "约3年前",
    ]  # fmt: skip
    assert ago(1, "en") == "1 day ago" and ago(90, "en") == "about 3 months ago"


@given(st.sampled_from([f.name for f in FEATURES]), st.one_of(st.none(), st.floats(0, 5000)))
def test_no_reason_shows_a_raw_number_of_a_yes_no_or_a_code(name, value):
    f = FEATURES_BY_NAME[name]
    if f.categorical and value is not None:
        value = f.categories[int(value) % len(f.categories)]
    zh = sentence(name, value, "zh")
    assert "_" not in zh and not re.search(r"[A-Za-z]", zh.replace("PHQ", "")), zh
    assert not re.search(r"[,:;()]", zh), zh  # full-width punctuation in Chinese
    if f.reading == "yes_no" and value is not None:
        assert zh.endswith(("是", "否")), zh


def test_every_code_the_registry_writes_has_both_labels():
    codes = {c for c in DETAILS} | {"F", "M", "naltrexone", "detox"}
    for code in codes:
        assert code_label(code, "zh") != code, code
        assert re.search(r"[\u4e00-\u9fff]", code_label(code, "zh")), code
    assert not set(CODE_LABELS) - codes - {"naltrexone"}  # none declared for nothing
    for e in EVENT_TYPES:  # every yes/no value has its two words, every amount its unit
        low, high = e.value_range or (0, 0)
        if (low, high) == (0, 1):
            assert e.value_words, e.name
        elif e.valued and e.name != "assessment":  # an answer's meaning is the codebook's
            assert e.unit, e.name
    assert Texts("zh").event_value("urine_test", 1.0) == "阳性"
    assert Texts("en").event_value("methadone_dose", 60.0) == "60 mg"


def test_background_is_what_nobody_can_act_on():
    assert is_background("age_years") and is_background("sex")
    assert not is_background("checkin_missed__count_90d")
    assert not is_background("family_drug_record__days_since")


def test_the_top_reason_is_the_largest_actionable_one_that_raises_the_risk():
    names = ["age_years", "checkin_missed__count_90d", "employed_now"]
    top = TopK(
        position=np.array([[0, 1, 2], [0, 2, 1], [0, 1, 2], [2, 0, 1]]),
        contribution=np.array(
            [[0.9, 0.3, -0.1], [0.9, -0.5, 0.2], [0.9, -0.3, -0.1], [0.0, 0.5, 0.0]]
        ),
        value=np.zeros((4, 3)),
        names=names,
    )
    # row 0: age is background, missed check-ins raise; row 1: employment lowers, check-ins
    # raise (smaller); row 2: nothing actionable raises, the largest actionable lowers;
    # row 3: only age is shown
    assert top_actionable(top).tolist() == [1, 2, 1, 0]


def caseload(previous: dt.date = dt.date(2026, 5, 30)) -> Caseload:
    frame = pd.DataFrame(
        {
            "district": ["huaxi", "huaxi", "nanming", "huaxi", "huaxi"],
            "probability": [0.9, 0.7, 0.6, 0.5, 0.1],
            "tier": ["high", "high", "high", "medium", "low"],
            "rising": [False, True, False, True, False],
            "change": [0.0, 0.2, np.nan, 0.3, -0.1],
            "last_contact": pd.to_datetime(["2026-06-10", None, None, "2026-01-01", None]),
        },
        index=pd.Index(["a", "b", "c", "d", "e"], name="person_id"),
    )
    return Caseload("relapse", "1", dt.date(2026, 6, 30), previous, frame)


def test_to_follow_up_is_who_rose_or_is_high_with_no_contact_since_a_month_earlier():
    view = select(caseload(), ("huaxi",), Filters(todo=True))
    # a: high but contacted 2026-06-10; b: rising, never contacted; d: rising, last
    # contacted in January; e: low and not rising
    assert list(view.index) == ["b", "d"] and list(view["rank"]) == [2, 3]
    # a follow-up saved today is a contact: b leaves the view, and its last contact is today
    today = dt.date(2026, 12, 7)
    after = select(caseload(), ("huaxi",), Filters(todo=True), {"b": today, "zz": today})
    assert list(after.index) == ["d"]
    every = select(caseload(), ("huaxi",), Filters(), {"b": today, "a": dt.date(2026, 1, 1)})
    assert every.loc["b", "last_contact"] == pd.Timestamp(today)
    assert every.loc["a", "last_contact"] == pd.Timestamp("2026-06-10")  # the later one


def test_sorting_keeps_the_risk_rank_and_orders_as_asked():
    by_change = select(caseload(), None, Filters(sort="change"))
    assert list(by_change.index) == ["d", "b", "a", "e", "c"]  # unknown change last
    by_contact = select(caseload(), None, Filters(sort="contact"))
    assert list(by_contact.index) == ["b", "c", "e", "d", "a"]  # never contacted first
    assert by_contact.loc["a", "rank"] == 1 and by_contact.loc["e", "rank"] == 5


def test_sorting_by_expected_benefit_puts_the_largest_fall_first_and_the_unknown_last():
    benefits = pd.DataFrame(
        {
            "option": ["x", None, "y", "x", "y"],
            "benefit_change": [-0.01, np.nan, -0.05, 0.0, -0.02],
        },
        index=pd.Index(["a", "b", "c", "d", "e"], name="person_id"),
    )
    ranked = select(caseload(), None, Filters(sort="benefit"), benefits=benefits)
    assert list(ranked.index) == ["c", "e", "a", "d", "b"]
    assert list(ranked["rank"]) == [3, 5, 1, 4, 2] and ranked.loc["c", "option"] == "y"
    # another order keeps its own, with the options beside it
    by_risk = select(caseload(), ("huaxi",), Filters(), benefits=benefits)
    assert list(by_risk.index) == ["a", "b", "d", "e"] and by_risk.loc["e", "option"] == "y"


def test_the_page_says_ranks_shares_dates_and_points_as_a_reader_does():
    zh, en = Texts("zh"), Texts("en")
    assert zh.rank(1) == "第1名" and en.rank(3) == "No. 3"
    assert zh.top_share(99.96) == "前 1%" and zh.top_share(100.0) == "前 1%"  # never 0 or 100
    assert en.top_share(50.0) == "top 50%"
    assert (
        zh.date(dt.date(2026, 6, 30)) == "2026年6月30日"
        and en.date(dt.date(2026, 6, 3)) == "3 Jun 2026"
    )
    assert zh.points(0.032) == "+3.2 个百分点" and en.points(-0.1) == "-10.0 points"
    assert zh.times_average(0.3, 0.1) == "约为平均水平的 3 倍"
    assert en.times_average(0.05, 0.1) == "about 0.5× the average"
    assert zh.parenthesised("花溪区") == "（花溪区）"
