"""Table lookup and arithmetic on the three TAT-QA tables of the sample index."""

from __future__ import annotations

import pytest

from indexer.store import Snapshot
from solver.table_tool import TableTool, format_number

CARRYFORWARD_ROW = "6f8b687f041e3e0a#t0:r0"  # "Operating loss carryforward": 73,260 (2019), 57,768 (2018)
NET_ASSET_ROW = "6f8b687f041e3e0a#t0:r3"  # "Net deferred tax asset": 795 (2019), 772 (2018)
DISCOUNT_RATE_ROW = "4a1d73702e0472b9#t0:r0"  # "Discount rate": 4.00% / 3.75% domestic, 1.90% / 2.80% international
BENEFIT_SCHEMES_ROW = "321629b6e97399dd#t0:r1"  # "Defined benefit schemes": 57, 44, 20 (2019, 2018, 2017)


@pytest.fixture(scope="module")
def tool(sample_index) -> TableTool:
    return TableTool(Snapshot.open(str(sample_index)))


def best(tool: TableTool, question: str):
    candidates = tool.compute(question, ["public"])
    assert candidates, f"no candidate for {question!r}"
    return candidates[0]


# -- loading and lookup -------------------------------------------------------------------


def test_sample_has_tables(tool):
    assert tool.has_tables


def test_lookup_finds_row_by_label(tool):
    found = tool.lookup("What was the operating loss carryforward in 2019?", ["public"])

    assert found[0].evidence_id == CARRYFORWARD_ROW


def test_lookup_renders_row_with_columns(tool):
    found = tool.lookup("operating loss carryforward", ["public"])

    assert found[0].text.startswith("Operating loss carryforward | ")
    assert "December 31 2019 U.S. $ in thousands: 73,260" in found[0].text


def test_lookup_returns_table_evidence(tool):
    row = tool.lookup("operating loss carryforward", ["public"])[0]

    assert row.kind == "table"
    assert row.source == "retrieve:table"
    assert row.details["table_id"] == "6f8b687f041e3e0a#t0"
    assert row.details["row_index"] == 0
    assert [cell["raw"] for cell in row.details["cells"]] == ["73,260", "57,768"]
    assert row.n_tokens > 0


def test_lookup_respects_limit(tool):
    assert len(tool.lookup("deferred tax asset", ["public"], limit=2)) == 2


def test_lookup_for_other_groups_finds_nothing(tool):
    assert tool.lookup("operating loss carryforward", ["finance"]) == []


# -- compute --------------------------------------------------------------------------------


def test_percentage_change_value(tool):
    candidate = best(tool, "What is the percentage change in the operating loss carryforward from 2018 to 2019?")

    assert candidate.text == "26.82"


def test_percentage_change_derivation(tool):
    candidate = best(tool, "What is the percentage change in the operating loss carryforward from 2018 to 2019?")

    assert candidate.derivation.startswith("(73,260 - 57,768) / 57,768 * 100 = 26.82")


def test_percentage_change_support(tool):
    candidate = best(tool, "What is the percentage change in the operating loss carryforward from 2018 to 2019?")

    assert candidate.support == [CARRYFORWARD_ROW]


def test_percentage_change_of_percentages(tool):
    candidate = best(tool, "What is the year on year percentage change in domestic discount rate between 2018 and 2019?")

    assert candidate.text == "6.67"
    assert candidate.support == [DISCOUNT_RATE_ROW]


def test_change_value(tool):
    candidate = best(tool, "What was the change in the net deferred tax asset from 2018 to 2019?")

    assert candidate.text == "23"


def test_change_derivation(tool):
    candidate = best(tool, "What was the change in the net deferred tax asset from 2018 to 2019?")

    assert candidate.derivation.startswith("795 - 772 = 23")
    assert candidate.support == [NET_ASSET_ROW]


def test_difference_between_columns(tool):
    question = "What is the difference between the domestic and international discount rates as at September 30, 2019?"
    candidate = best(tool, question)

    assert candidate.text == "2.1"
    assert candidate.derivation.startswith("4 - 1.9 = 2.1")


def test_average_of_opening_and_closing_year(tool):
    candidate = best(tool, "What is the 2019 average defined benefit schemes?")

    assert candidate.text == "50.5"
    assert candidate.derivation.startswith("(57 + 44) / 2 = 50.5")
    assert candidate.support == [BENEFIT_SCHEMES_ROW]


def test_sum_over_years(tool):
    candidate = best(tool, "What is the sum of defined benefit schemes in 2017, 2018 and 2019?")

    assert candidate.text == "121"


def test_ratio_of_two_rows(tool):
    candidate = best(tool, "What is the ratio of net deferred tax asset to operating loss carryforward in 2019?")

    assert candidate.text == "0.01"
    assert candidate.derivation.startswith("795 / 73,260 = 0.01")


def test_compare_years(tool):
    candidate = best(tool, "In which year was the operating loss carryforward larger?")

    assert candidate.text == "2019"


def test_lookup_of_two_years(tool):
    candidate = best(tool, "What was the operating loss carryforward amount in 2019 and 2018 respectively?")

    assert candidate.text == "73,260, 57,768"


def test_clear_match_is_confident(tool):
    clear = best(tool, "What is the percentage change in the operating loss carryforward from 2018 to 2019?")
    vague = best(tool, "How is the discount rate for domestic plans determined?")

    assert clear.confidence > 0.7
    assert vague.confidence < 0.3


def test_unrelated_question_gives_nothing(tool):
    assert tool.compute("Who portrayed Corliss Archer in the film Kiss and Tell?", ["public"]) == []


def test_compute_reads_only_evidence_tables(tool):
    rows = tool.lookup("discount rate", ["public"], limit=1)
    candidates = tool.compute("What was the change in the net deferred tax asset from 2018 to 2019?", ["public"], rows)

    assert all(candidate.support[0].startswith("4a1d73702e0472b9#t0") for candidate in candidates)


def test_compute_for_other_groups_empty(tool):
    assert tool.compute("What was the change in the net deferred tax asset from 2018 to 2019?", ["finance"]) == []


# -- number formatting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.25, "0.25"), (169.4, "169.4"), (835623.0, "835623"), (-0.6, "-0.6"), (26.8236, "26.82"), (-0.001, "0")],
)
def test_format_number(value, expected):
    assert format_number(value) == expected
