"""``practices import FILE.csv``: onboard many practices; one bad row never stops the rest."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from reconciler.core.breaker import Admission
from reconciler.core.errors import AlreadyOnboarded, BadInput, BreakerOpen, CoordinationUnavailable, ReconcilerError
from reconciler.core.halo_errors import INTEGRATOR_WIDE_CAUSES, HaloError, HaloForbidden, HaloUnauthorized
from reconciler.core.vocabulary import Verdict
from reconciler.usecases.onboarding import OnboardRequest, onboard_practice, parse_request
from reconciler.usecases.ports import Breaker, Halo, UnitOfWork

log = structlog.get_logger()

REQUIRED_COLUMNS = ("pms_type", "pms_id")
OPTIONAL_COLUMNS = ("pairing_code",)  # a Best Practice site's pairing code, when it is not paired yet
MAX_FILE_BYTES = 50 * 1024 * 1024


class BadCsvFile(BadInput):
    pass


@dataclass(frozen=True)
class CsvRow:
    line: int
    pms_type: str
    pms_id: str
    pairing_code: str | None = field(default=None, repr=False)  # never printed


@dataclass
class ImportSummary:
    onboarded: list[int] = field(default_factory=list)
    already: list[CsvRow] = field(default_factory=list)
    failed: list[tuple[CsvRow, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "onboarded": len(self.onboarded),
            "already_onboarded": len(self.already),
            "failed": [
                {"line": row.line, "pms_type": row.pms_type, "pms_id": row.pms_id, "error": error}
                for row, error in self.failed
            ],
            "practice_ids": self.onboarded,
        }


def read_rows(path: Path) -> list[CsvRow]:
    """Read and check the file as a whole; raise :class:`BadCsvFile` if it is not our CSV."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BadCsvFile(f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise BadCsvFile(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadCsvFile(f"{path}: is a directory") from None
    except UnicodeDecodeError:
        raise BadCsvFile(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise BadCsvFile(f"{path}: cannot be read ({exc.strerror})") from None
    if "\x00" in text:
        raise BadCsvFile(f"{path}: not a CSV file (binary content)")
    # strict: a quote left open (or text after a closing quote) is a bad file, not a row swallowing the rest.
    # csv.reader, not DictReader: it yields blank lines too, so each record's first line is known.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip().lower() for name in next(reader, [])]
    except csv.Error as exc:
        raise BadCsvFile(f"{path}: line 1: {exc}") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise BadCsvFile(f"{path}: the header must name the columns {', '.join(REQUIRED_COLUMNS)} (missing {', '.join(missing)})")
    rows: list[CsvRow] = []
    # A record starts on the line after the last one read (``line_num`` counts lines read so far, and a
    # quoted field may span several): rows and errors name the line the record starts on.
    start = reader.line_num + 1
    try:
        for values in reader:
            if any(v.strip() for v in values):  # else a blank line
                record = dict(zip(header, values))
                rows.append(CsvRow(line=start, pms_type=(record.get("pms_type") or ""),
                                   pms_id=(record.get("pms_id") or ""), pairing_code=(record.get("pairing_code") or None)))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise BadCsvFile(f"{path}: line {start}: {exc}") from None
    return rows


def shown(text: str, limit: int = 128) -> str:
    """A value from the file as the terminal may show it: control characters (an ANSI escape that would
    recolour or rewrite the operator's terminal) escaped, and at most ``limit`` characters."""
    text = text[:limit]
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def import_rows(
    rows: list[CsvRow],
    *,
    unit_of_work: UnitOfWork,
    client: Halo,
    identifier_query: str | None = None,
    progress: Callable[[], None] = lambda: None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    onboarded: Callable[[int, str], None] = lambda practice_id, guid: None,
    breaker: Breaker | None = None,
) -> ImportSummary:
    """Onboard each row in its own transaction; collect failures instead of stopping.

    A refused key, and a 403 that blames our IP or our quota, stop the import: every following row
    would fail the same way and spend a call. The refusal trips the integrator-wide breaker, and an
    import does not start while the breaker is open (``BreakerOpen``): a bulk path spends no call
    that the breaker would not let the workers spend.
    """
    try:
        states = breaker.states() if breaker is not None else []
    except CoordinationUnavailable as exc:
        # Without the coordination store the breaker cannot be read; the first refusal still stops us.
        log.warning("breaker_unavailable", error=str(exc))
        states = []
    if breaker is not None and states:
        if breaker.peek(now=now().timestamp()) is Admission.BLOCKED:
            state = states[0]
            wait = max(0, round(state.next_probe_at - now().timestamp()))
            raise BreakerOpen(f"Halo refused the last calls ({state.cause}, {state.scope}); the breaker's next probe "
                              f"is in {wait} s. Fix the cause, then `halo-reconciler reconcile ID --now`, and import again")
    summary = ImportSummary()
    for row in rows:
        try:
            request: OnboardRequest = parse_request(row.pms_type, row.pms_id, row.pairing_code)
            with unit_of_work() as store:
                practice = onboard_practice(store, client, request, now=now(), identifier_query=identifier_query)
                store.commit()
                summary.onboarded.append(practice.id)  # type: ignore[arg-type]
                onboarded(practice.id, practice.halo_guid)  # type: ignore[arg-type]
        except AlreadyOnboarded:
            summary.already.append(row)
        except HaloUnauthorized:
            _trip(breaker, Verdict.UNAUTHORIZED, now())
            raise
        except HaloForbidden as exc:
            if exc.cause in INTEGRATOR_WIDE_CAUSES:
                _trip(breaker, Verdict(str(exc.cause)), now())
                raise
            summary.failed.append((row, str(exc)))
        except (ReconcilerError, HaloError) as exc:
            summary.failed.append((row, str(exc)))
        finally:
            progress()
    return summary


def _trip(breaker: Breaker | None, cause: Verdict, at: datetime) -> None:
    if breaker is None:
        return
    try:
        breaker.trip(cause, now=at.timestamp())
    except CoordinationUnavailable as exc:
        log.warning("breaker_unavailable", error=str(exc))


def iter_lines(summary: ImportSummary) -> Iterator[str]:
    yield (
        f"onboarded {len(summary.onboarded)}, already onboarded {len(summary.already)}, "
        f"failed {len(summary.failed)}"
    )
    for row, error in summary.failed:
        yield f"  line {row.line} ({shown(row.pms_type)} {shown(row.pms_id)}): {shown(error, 1000)}"
