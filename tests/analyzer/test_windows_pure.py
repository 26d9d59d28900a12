"""Window bounds as an operator types them (`audit --baseline FROM..TO`): any text is a snapshot
id, a time, or one clear error — never a traceback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from analyzer.analysis.windows import _resolve, parse_ref
from analyzer.snapshots.model import SnapshotMeta
from pgarchitect.errors import UserError

METAS = tuple(SnapshotMeta(i, datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=5 * i))
              for i in range(1, 6))


@given(st.text(max_size=40))
def test_any_text_is_an_id_a_time_or_one_clear_error(text: str) -> None:
    try:
        ref = parse_ref(text)
    except UserError as exc:
        assert "expected a snapshot id or an ISO-8601 time" in str(exc)
        return
    if isinstance(ref, datetime):
        assert ref.tzinfo is not None
    else:
        assert ref >= 0
    try:  # and it resolves against stored (offset-aware) snapshot times without a TypeError
        assert _resolve(METAS, ref) in METAS
    except UserError as exc:
        assert "does not exist" in str(exc)


def test_digits_that_are_not_ascii_are_refused() -> None:
    for text in ("²", "١٢", "\uff11"):
        try:
            parse_ref(text)
        except UserError:
            continue
        raise AssertionError(f"{text!r} was read as a snapshot id")


def test_a_time_without_an_offset_is_utc() -> None:
    assert parse_ref("2026-12-01T00:12") == datetime(2026, 12, 1, 0, 12, tzinfo=UTC)
    assert _resolve(METAS, parse_ref("2026-12-01T00:12")).id == 2  # at or before
    assert parse_ref("2026-12-01T01:12+01:00") == datetime(2026, 12, 1, 0, 12, tzinfo=UTC)
