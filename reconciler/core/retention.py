"""Retention: what a year of audit keeps for good, and what routine checks fold into.

Decisions, switches, holds, tickets and every verdict but a routine ``unchanged`` are kept for
good. A routine verification (verdict ``unchanged``, action ``marked_verified``, no ticket, not a
person's manual run) older than ``unchanged_days`` folds into one count per practice and UTC day:
the table stays bounded by the fleet's size times the age, while "was this practice checked on
that day, and how often" stays answerable forever.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from reconciler.core.vocabulary import Action, Trigger, Verdict

ROUTINE_VERDICT = Verdict.UNCHANGED
ROUTINE_ACTION = Action.MARKED_VERIFIED
# A manual run is an operator testing something: kept with the decisions, whatever it found.
KEPT_TRIGGER = Trigger.MANUAL

DEFAULT_UNCHANGED_DAYS = 30
DEFAULT_BATCH_SIZE = 5000


@dataclass(frozen=True)
class RetentionPolicy:
    unchanged_days: int = DEFAULT_UNCHANGED_DAYS
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if self.unchanged_days < 1:
            raise ValueError("routine verifications must be kept for at least one day")
        if self.batch_size < 1:
            raise ValueError("a retention batch folds at least one row")

    def cutoff(self, now: datetime) -> datetime:
        """Routine verifications that started before this fold."""
        return now - timedelta(days=self.unchanged_days)


def routine_sql() -> str:
    """The rule as a SQL predicate over ``reconciliations`` (the store's queries and the partial index)."""
    return (f"verdict = '{ROUTINE_VERDICT}' AND action = '{ROUTINE_ACTION}' AND trigger != '{KEPT_TRIGGER}' "
            "AND ticket_id IS NULL")


def day_of(moment: datetime) -> date:
    return moment.astimezone(UTC).date() if moment.tzinfo else moment.date()


def day_counts(rows: Iterable[tuple[int, datetime]]) -> list[tuple[int, date, int]]:
    """``(practice_id, started_at)`` of folded rows → ``(practice_id, day, count)``, sorted by key
    (writers that upsert in one order cannot deadlock on each other)."""
    counts = Counter((practice_id, day_of(started_at)) for practice_id, started_at in rows)
    return [(practice_id, day, n) for (practice_id, day), n in sorted(counts.items())]
