"""Frame ranges and chunks (farmhand.jobs.frames): what the artist types for --frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from farmhand.errors import UsageError
from farmhand.jobs.frames import chunks, describe, parse_frames


@pytest.mark.parametrize(
    ("text", "frames"),
    [
        ("1-5", [1, 2, 3, 4, 5]),
        ("7", [7]),
        ("1,3,5-7", [1, 3, 5, 6, 7]),
        (" 5-7 , 1 ", [1, 5, 6, 7]),
        ("1-10x3", [1, 4, 7, 10]),
        ("2-4,3-5", [2, 3, 4, 5]),
    ],
)
def test_ranges(text: str, frames: list[int]) -> None:
    assert parse_frames(text) == frames


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("5-1", "ends before it starts (did you mean 1-5?)"),
        ("a-b", "bad frame range 'a-b'"),
        ("0-0", "frames start at 1"),
        ("0", "frames start at 1"),
        ("", "no frames given"),
        ("1-", "bad frame range '1-'"),
        ("1--3", "bad frame range"),
        ("1-9x0", "step must be at least 1"),
        ("1-1000000", "more than 100000 frames"),
        ("-3", "bad frame range"),
        ("1-5\n", "bad frame range"),  # checked whole: no trailing newline, tab or other digits
        ("1-5\t", "bad frame range"),
        ("\u0663", "bad frame range"),
    ],
)
def test_bad_ranges_are_one_line(text: str, why: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_frames(text)
    assert why in str(raised.value)
    assert "\n" not in str(raised.value)


def test_chunks_never_span_a_gap() -> None:
    assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert chunks([1, 2, 5, 6, 7], 10) == [[1, 2], [5, 6, 7]]
    assert chunks([1, 3], 1) == [[1], [3]]
    with pytest.raises(UsageError, match="at least one frame"):
        chunks([1], 0)


def test_describe() -> None:
    assert describe([1, 2, 3, 5, 8, 9]) == "1-3,5,8-9"
    assert describe([]) == ""


@given(st.lists(st.integers(1, 500), min_size=1, max_size=60, unique=True), st.integers(1, 9))
def test_chunks_cover_every_frame_once(frames: list[int], size: int) -> None:
    frames.sort()
    parts = chunks(frames, size)
    assert [f for part in parts for f in part] == frames
    assert all(len(p) <= size and p == list(range(p[0], p[-1] + 1)) for p in parts)
    assert parse_frames(describe(frames)) == frames
