"""``halo-reconciler``: the operator's command line.

Every command is a thin adapter over ``worker.admin`` (which calls the use cases with the clients
``worker.wiring`` builds); none holds logic of its own. Output contract (PRODUCT.md,
"Contract details"): ``--json`` prints one JSON document on stdout and nothing else there; exit 0 done,
2 bad input (one line on stderr), 1 anything else that stopped the command (explained on stderr);
no traceback for an expected failure. The mapping from error types to exit codes lives in ``main``.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from reconciler import logs
from reconciler.core.change import INTEGRATOR_WIDE_REASONS
from reconciler.core.errors import BadInput, CoordinationUnavailable, OperationFailed, ReconcilerError
from reconciler.core.guids import InvalidGuid, parse_guid
from reconciler.core.halo_errors import HaloError, HaloUnauthorized
from reconciler.core.people import parse_operator_name

if TYPE_CHECKING:
    from models.practice import PracticeOut
    from models.ticket import TicketOut
    from worker.config import Settings

# Start-up time: `--help` answers within 300 ms and `practices list --json` within 500 ms
# (docs/BENCHMARKS.md, "cli"), so this module imports only typer and the pure core at load. The
# admin API (SQLModel and the adapters), the settings (pydantic), structlog and rich are imported by
# the commands that use them, through the helpers below; tests/integration/test_cli_imports.py holds the line.

app = typer.Typer(
    name="halo-reconciler",
    help="Keep Halo Cloud routing GUIDs correct.",
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
practices_app = typer.Typer(help="Onboard and inspect practices.", no_args_is_help=True)
tickets_app = typer.Typer(help="Tickets for people.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
operators_app = typer.Typer(help="People who may sign in to the operator console.", no_args_is_help=True)
app.add_typer(operators_app, name="operators")
app.add_typer(practices_app, name="practices")
app.add_typer(db_app, name="db")
app.add_typer(tickets_app, name="tickets")

# The largest id the tables hold (an INTEGER key, 32 bits in PostgreSQL): a larger one is bad input (exit 2),
# not a crash in the database driver.
ID_MAX = 2**31 - 1
OLDER_THAN_MAX = 100 * 366 * 86_400  # a hundred years: older than anything, and a timedelta still
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
ByOption = Annotated[str | None, typer.Option("--by", help="Who decides, for the audit trail (default: the operating-system user).")]
NoteOption = Annotated[str | None, typer.Option("--note", help="Why, for the audit trail.")]



class _LazyConsole:
    """A rich Console built on first print: rich costs ~50 ms to import, and `--json` never needs it."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def get(self) -> Any:
        if self._console is None:
            from rich.console import Console  # rich only for readable output (start-up time)

            self._console = Console(**self._options)
            if not self._console.is_terminal:
                # Piped or redirected: no width to fit, so a table never wraps inside a value (a GUID
                # split over two lines breaks `grep` and `cut`); `_print_table` drops the padding.
                self._console.width = 1_000_000
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.get().print(*objects, **kwargs)


stdout = _LazyConsole(highlight=False, soft_wrap=True)
stderr = _LazyConsole(stderr=True, highlight=False)


@contextmanager
def _importing() -> Iterator[None]:
    """No garbage collection while a command imports its modules: they allocate about a million
    objects that live as long as the process, and each full collection among them walks them all
    again (~20% of a listing's CPU, docs/BENCHMARKS.md "cli"). Collection resumes right after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _admin() -> ModuleType:
    """The admin API, imported by the commands that call it."""
    with _importing():
        from worker import admin  # the models, the store and the use cases only for commands (start-up time)

    return admin


def _db() -> ModuleType:
    with _importing():
        from worker import db  # the engine and the schema check only for commands (start-up time)

    return db


def _settings(*, logs_on_first_line: bool = False) -> Settings:
    """The settings, validated, and logging configured. ``logs_on_first_line``: the read-only
    listings defer the logging configuration (structlog and rich, ~50 ms) to their first log line,
    which a listing that succeeds never writes (reconciler/logs.py)."""
    with _importing():
        # pydantic's settings only once a command runs, not for `--help` (start-up time).
        from worker.config import get_settings

    settings = get_settings()
    if logs_on_first_line:
        logs.configure_on_first_use(lambda: _configure_logging(settings))
    else:
        _configure_logging(settings)
    return settings


def _configure_logging(settings: Settings) -> None:
    with _importing():
        from worker.logging import configure_logging  # structlog only for commands that log (start-up time)

    configure_logging(settings)


def _table() -> Any:
    from rich.table import Table  # rich only for readable output (start-up time)

    return Table(box=None, pad_edge=False)


def _print_table(table: Any) -> None:
    """A table on stdout: fitted to a terminal; piped, one line per row with no trailing padding."""
    console = stdout.get()
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _print_more(next_cursor: str | None, *, as_json: bool) -> None:
    """Where the next page starts: on stdout under a table, on stderr beside JSON (stdout holds one
    document and nothing else)."""
    if next_cursor is None:
        return
    line = f"more: --cursor {next_cursor}"
    if as_json:
        sys.stderr.write(line + "\n")
    else:
        stdout.print(line, markup=False)


def _named(practice_id: int | None, names: dict[int, str]) -> str:
    if practice_id is None:
        return "-"
    name = names.get(practice_id)
    return f"{practice_id} {name}" if name else str(practice_id)


class _AboveTheBar:
    """A log stream that prints each line through the progress bar's console: rich draws it above
    the bar, which stays at the bottom, instead of a line scrolling through it."""

    def __init__(self, console: Any) -> None:
        self._console = console
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True  # it is the terminal the bar is on: readable lines, not JSON


@contextmanager
def _progress(*, disable: bool, settings: Settings | None = None) -> Iterator[Any]:
    """A progress bar on stderr (``disable``: none). While it shows, the command's log lines are
    printed above it (``settings``: the logging to restore afterwards)."""
    from rich.progress import Progress  # rich only when a bar may show (start-up time)

    quiet = disable or settings is None
    if not quiet:
        with _importing():
            from worker.logging import configure_logging  # structlog only for commands that log (start-up time)
    try:
        with Progress(console=stderr.get(), disable=disable) as bar:
            if not quiet:
                configure_logging(settings, stream=_AboveTheBar(bar.console))
            yield bar
    finally:
        if not quiet:  # after the bar has stopped and handed sys.stderr back
            configure_logging(settings)


def _now() -> datetime:
    return datetime.now(UTC)


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def _fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _print_practice(out: PracticeOut) -> None:
    rows = [
        ("id", str(out.id)),
        ("pms", f"{out.pms_type} {out.pms_id}"),
        ("practice name", out.practice_name),
        ("halo guid", out.halo_guid),
        ("state", str(out.state)),
        ("proposed guid", out.proposed_guid or "-"),
        ("availability", out.availability or "-"),
        ("last verified", _fmt_time(out.last_verified_at)),
        ("last verdict", str(out.last_verdict) if out.last_verdict else "-"),
        ("next attempt", _fmt_time(out.next_attempt_at)),
    ]
    extra = {k: v for k, v in out.identifiers.items() if k != "practice_name"}
    if extra:
        rows.append(("identifiers", ", ".join(f"{k}={v}" for k, v in extra.items())))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        stdout.print(f"{name:<{width}}  {value}", markup=False)
    stdout.print("guid history:", markup=False)
    for period in out.guid_history:
        stdout.print(
            f"  {period.guid}  {_fmt_time(period.from_)} .. {_fmt_time(period.until) if period.until else 'now':<20}  {period.reason}",
            markup=False,
        )


# --- practices -----------------------------------------------------------------------------------


@practices_app.command("add")
def practices_add(
    pms_type: Annotated[str, typer.Option("--pms-type", help="BestPractice, Zedmed or D4w.")],
    pms_id: Annotated[str, typer.Option("--pms-id", help="The PMS's own id of the practice (Bp Site ID, Zedmed Database ID).")],
    pairing_code: Annotated[str | None, typer.Option(
        "--pairing-code", help="The pairing code the practice generated in Bp Premier (Best Practice sites not yet paired).",
    )] = None,
    as_json: JsonOption = False,
) -> None:
    """Onboard a practice: find its authoritative GUID at Halo, pair with it and record its identifiers."""
    _settings()
    out = _admin().onboard(pms_type, pms_id, pairing_code)
    if as_json:
        _print_json(out.to_json())
    else:
        stdout.print(f"onboarded practice {out.id}: {out.practice_name} ({out.pms_type} {out.pms_id}) -> {out.halo_guid}", markup=False)


LimitOption = Annotated[int | None, typer.Option(
    "--limit", min=1, max=1000, help="At most this many rows (a page); the next page's --cursor follows them.")]
CursorOption = Annotated[str | None, typer.Option(
    "--cursor", help="Start after the page that printed this cursor (its `more: --cursor ...` line).")]


@practices_app.command("list")
def practices_list(
    state: Annotated[str | None, typer.Option("--state", help="Only practices in this state: active, held or backoff.")] = None,
    limit: LimitOption = None,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """List onboarded practices in id order (every one, unless --state or --limit says otherwise)."""
    _settings(logs_on_first_line=True)
    next_cursor = None
    if limit is None and cursor is None and state is None:
        outs = _admin().practices()
    elif limit is None:
        outs = []
        while True:  # every practice of the state (from the cursor on), a keyset page at a time
            page = _admin().practices_listing(state=state, cursor=cursor, limit=1000)
            outs += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    else:
        page = _admin().practices_listing(state=state, cursor=cursor, limit=limit)
        outs, next_cursor = page.items, page.next_cursor
    if as_json:
        _print_json([o.to_json() for o in outs])
        _print_more(next_cursor, as_json=True)
        return
    table = _table()
    for column in ("id", "pms type", "pms id", "practice name", "halo guid", "state", "last verdict", "last verified"):
        table.add_column(column)
    for o in outs:
        table.add_row(
            str(o.id), str(o.pms_type), o.pms_id, o.practice_name, o.halo_guid, str(o.state),
            str(o.last_verdict or "-"), _fmt_time(o.last_verified_at),
        )
    _print_table(table)
    stdout.print(f"{len(outs)} practice(s)", markup=False)
    _print_more(next_cursor, as_json=False)


@practices_app.command("show")
def practices_show(
    practice_id: Annotated[int | None, typer.Argument(max=ID_MAX, help="The practice's id.", show_default=False)] = None,
    guid: Annotated[str | None, typer.Option("--guid", help="Its current GUID or any GUID it had.")] = None,
    pms_type: Annotated[str | None, typer.Option("--pms-type")] = None,
    pms_id: Annotated[str | None, typer.Option("--pms-id")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show one practice with its GUID history."""
    _settings(logs_on_first_line=True)
    out = _admin().practice(practice_id, guid=guid, pms_type=pms_type, pms_id=pms_id)
    if as_json:
        _print_json(out.to_json())
    else:
        _print_practice(out)
        stdout.print(f"audit: halo-reconciler audit --practice {out.id}  (console: /practices/{out.id})", markup=False)


@practices_app.command("pair")
def practices_pair(
    practice_id: Annotated[int, typer.Argument(max=ID_MAX, help="A practice held for pairing_required.")],
    pairing_code: Annotated[str, typer.Option("--pairing-code", help="The pairing code the practice generated in Bp Premier.")],
    by: ByOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pair with a held change's new site, check it is active, and switch to it."""
    _settings()
    _print_change(_admin().pair(practice_id, pairing_code, by=by, note=note), as_json, "paired")


@practices_app.command("import")
def practices_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header naming the columns pms_type and pms_id (and optionally pairing_code).")],
    as_json: JsonOption = False,
) -> None:
    """Onboard many practices from a CSV file; a bad row is reported and the rest go on."""
    # The use cases and clients only for the commands that need them (start-up time of the CLI).
    from reconciler.usecases.importing import import_rows, iter_lines, read_rows
    from worker import wiring

    settings = _settings()
    rows = read_rows(file)
    _db().ensure_schema()
    show_bar = sys.stderr.isatty() and not as_json
    with wiring.build_halo_client(settings, rate_limited=True) as client, \
            _progress(disable=not show_bar, settings=settings) as bar:
        task = bar.add_task("onboarding", total=len(rows))
        summary = import_rows(
            rows,
            unit_of_work=wiring.unit_of_work,
            client=client,
            identifier_query=settings.identifier_query,
            progress=lambda: bar.advance(task),
            onboarded=lambda practice_id, guid: _admin().index_guids(practice_id, guid, []),
            breaker=wiring.breaker(settings),
        )
    if as_json:
        _print_json(summary.to_json())
    else:
        for line in iter_lines(summary):
            stdout.print(line, markup=False)
    if summary.failed:
        raise typer.Exit(1)


# --- reconciliation, people in the loop -------------------------------------------------------------


@app.command("reconcile")
def reconcile(
    practice_id: Annotated[int | None, typer.Argument(max=ID_MAX, help="The practice's id.", show_default=False)] = None,
    guid: Annotated[str | None, typer.Option("--guid", help="Its current GUID or any GUID it had.")] = None,
    pms_type: Annotated[str | None, typer.Option("--pms-type")] = None,
    pms_id: Annotated[str | None, typer.Option("--pms-id")] = None,
    now: Annotated[bool, typer.Option("--now", help="Run it in this process and print the verdict.")] = False,
    take_over: Annotated[bool, typer.Option(
        "--take-over", help="With --now: end the claim another run holds on the practice first (its worker host "
                            "died); recorded in the audit trail.")] = False,
    by: ByOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reconcile one practice: enqueue it for the worker, or with --now run it here."""
    _settings()
    selector = {"guid": guid, "pms_type": pms_type, "pms_id": pms_id}
    if take_over and not now:
        raise BadInput("--take-over needs --now (it ends another run's claim to run the practice here)")
    if not now:
        task_id = _admin().enqueue_reconcile(practice_id, **selector)
        _print_json({"task_id": task_id}) if as_json else stdout.print(f"enqueued reconciliation {task_id}", markup=False)
        return
    result = _admin().reconcile_now(practice_id, take_over=take_over, by=by, note=note, **selector)
    if as_json:
        _print_json(result.to_json())
        return
    line = f"practice {result.practice_id}: {result.verdict} -> {result.action}"
    if result.new_guid and result.new_guid != result.old_guid:
        line += f" ({result.old_guid} -> {result.new_guid})"
    if result.ticket_id:
        line += f", ticket {result.ticket_id}"
    stdout.print(line, markup=False)
    if result.detail:
        stdout.print(f"  {result.detail}", markup=False)


@app.command("sweep")
def sweep(
    now: Annotated[bool, typer.Option("--now", help="Reconcile every stale practice in this process.")] = False,
    older_than: Annotated[int | None, typer.Option("--older-than", min=0, max=OLDER_THAN_MAX, help="Stale after this many seconds (default: the configured age, a day).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-resolve practices not verified recently, and retry those whose backoff is due."""
    settings = _settings()
    if not now:
        task_id = _admin().enqueue_sweep(older_than)
        _print_json({"task_id": task_id}) if as_json else stdout.print(f"enqueued sweep {task_id}", markup=False)
        return
    show_bar = sys.stderr.isatty() and not as_json
    with _progress(disable=not show_bar, settings=settings) as bar:
        def factory(total: int):
            task = bar.add_task("sweeping", total=total)
            return lambda: bar.advance(task)

        summary = _admin().sweep_now(older_than, progress_factory=factory)
    if as_json:
        _print_json(summary.to_json())
        return
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.verdicts.items())) or "nothing to do"
    stdout.print(f"checked {summary.checked} practice(s): {counts}" + (f"; {summary.skipped} skipped (backoff or key refused)" if summary.skipped else ""), markup=False)


def _print_change(out: PracticeOut, as_json: bool, verb: str) -> None:
    if as_json:
        _print_json(out.to_json())
    else:
        stdout.print(f"practice {out.id} {verb}: now {out.halo_guid} ({out.state})", markup=False)


@app.command("approve")
def approve(practice_id: Annotated[int, typer.Argument(max=ID_MAX, help="A held practice's id.")], by: ByOption = None,
            note: NoteOption = None, as_json: JsonOption = False) -> None:
    """Switch a held practice to its proposed GUID; its new identifiers become the baseline (a business
    change needs HALO_RECONCILER_APPROVALS_REQUIRED approvals by different people)."""
    _settings()
    out = _admin().approve(practice_id, by=by, note=note)
    if out.state == "held" and out.proposed_guid:
        so_far = _admin().approvals(practice_id)
        missing = so_far["required"] - len(so_far["approved_by"])
        if as_json:
            _print_json({**out.to_json(), "approvals": so_far})
        else:
            stdout.print(f"practice {out.id}: approval recorded (approved by {', '.join(so_far['approved_by'])}); "
                         f"{missing} more approval(s) by another person needed before it switches", markup=False)
        return
    _print_change(out, as_json, "approved")


@app.command("reject")
def reject(practice_id: Annotated[int, typer.Argument(max=ID_MAX, help="A held practice's id.")], by: ByOption = None,
           note: NoteOption = None, as_json: JsonOption = False) -> None:
    """Keep a held practice's current GUID; the same proposal will not ticket again."""
    _settings()
    _print_change(_admin().reject(practice_id, by=by, note=note), as_json, "rejected")


@app.command("autoswitch")
def autoswitch(
    action: Annotated[str, typer.Argument(help="status, pause or resume.")],
    by: ByOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show, pause or resume automatic switching (the mass-change guard pauses it)."""
    _settings()
    state = _admin().autoswitch(action, by=by, note=note)
    if as_json:
        _print_json(state)
    elif state["paused"]:
        stdout.print(f"automatic switching is paused since {state['since']} ({state['reason']})", markup=False)
    else:
        stdout.print("automatic switching is on", markup=False)


def _print_tickets(outs: list[TicketOut], names: dict[int, str]) -> None:
    table = _table()
    for column in ("id", "kind", "reason", "status", "practice", "seen", "last seen", "detail"):
        table.add_column(column, overflow="fold")
    for t in outs:
        table.add_row(str(t.id), str(t.kind), str(t.reason), str(t.status),
                      _named(t.practice_id, names) if t.practice_id else "integrator-wide",
                      str(t.occurrences), _fmt_time(t.last_seen_at), t.detail)
    _print_table(table)
    stdout.print(f"{len(outs)} ticket(s)", markup=False)
    if any(t.practice_id is None and t.status != "resolved" and t.reason in INTEGRATOR_WIDE_REASONS
           for t in outs):
        # The ticket's detail states the probe schedule; when the breaker probes next is read now.
        from worker.config import get_settings  # (imported by _settings already; here for the name)
        from worker.health import check_breaker  # Redis only when a breaker's ticket is listed (start-up time)

        stdout.print(f"breaker: {check_breaker(get_settings()).detail}", markup=False)


@tickets_app.command("list")
def tickets_list(
    status: Annotated[str | None, typer.Option("--status", help="open, acknowledged or resolved (default: open and acknowledged).")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="contact_halo_support, contact_practice or check_integration.")] = None,
    limit: LimitOption = None,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tickets, oldest first."""
    _settings(logs_on_first_line=True)
    admin = _admin()
    next_cursor = None
    if limit is None and cursor is None:
        outs = admin.list_tickets(status, kind)
        names = {} if as_json else admin.practice_names([t.practice_id for t in outs])
    else:
        page = admin.tickets_listing(status, kind, cursor=cursor, limit=limit or 1000)
        outs, names, next_cursor = page.items, page.names, page.next_cursor
    if as_json:
        _print_json([t.to_json() for t in outs])
    else:
        _print_tickets(outs, names)
    _print_more(next_cursor, as_json=as_json)


def _print_ticket(out: TicketOut, as_json: bool) -> None:
    if as_json:
        _print_json(out.to_json())
    else:
        stdout.print(f"ticket {out.id} ({out.kind}/{out.reason}) is {out.status}", markup=False)


@tickets_app.command("ack")
def tickets_ack(ticket_id: Annotated[int, typer.Argument(max=ID_MAX)], by: ByOption = None, note: NoteOption = None,
                as_json: JsonOption = False) -> None:
    """Acknowledge an open ticket: someone is on it."""
    _settings()
    _print_ticket(_admin().acknowledge_ticket(ticket_id, by=by, note=note), as_json)


@tickets_app.command("resolve")
def tickets_resolve(ticket_id: Annotated[int, typer.Argument(max=ID_MAX)], by: ByOption = None, note: NoteOption = None,
                    as_json: JsonOption = False) -> None:
    """Resolve a ticket by hand."""
    _settings()
    _print_ticket(_admin().resolve_ticket(ticket_id, by=by, note=note), as_json)


# --- the audit trail and the console's operators ---------------------------------------------------


@app.command("audit")
def audit(
    practice: Annotated[int | None, typer.Option("--practice", max=ID_MAX, help="Only this practice's entries.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this person's decisions (worker: only reconciliations).")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only this action (switched, held, approved, ...).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this date or time (2026-12-04, 2026-12-04T09:30; UTC).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to this date (that day included) or time.")] = None,
    operator_changes: Annotated[bool, typer.Option("--operator-changes", help="Only changes to operators (added, disabled, password reset, role changed, ...).")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many entries (newest); the next page's --cursor follows them.")] = None,
    cursor: CursorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every reconciliation (actor worker) and every person's decision, newest first."""
    _settings(logs_on_first_line=True)
    admin = _admin()
    next_cursor = None
    if cursor is None and (limit is None or limit > 1000):
        entries = admin.audit(practice, limit=limit, actor=actor, action=action, since=since, until=until,
                              operator_changes=operator_changes)
        names = {} if as_json else admin.practice_names([e.practice_id for e in entries])
    else:
        if practice is not None:
            admin.practice(practice)  # an unknown practice is bad input, as without a cursor
        page = admin.audit_listing(practice, actor=actor, action=action, since=since, until=until, cursor=cursor,
                                   operator_changes=operator_changes, limit=limit or 1000)
        entries, names, next_cursor = page.items, page.names, page.next_cursor
    if as_json:
        _print_json([e.to_json() for e in entries])
        _print_more(next_cursor, as_json=True)
        return
    table = _table()
    for column in ("at", "actor", "action", "practice", "ticket", "note", "detail"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(_fmt_time(e.at), e.actor, e.action, _named(e.practice_id, names), str(e.ticket_id or "-"),
                      e.note or "", e.detail or "")
    _print_table(table)
    stdout.print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}", markup=False)
    _print_more(next_cursor, as_json=False)


@operators_app.command("add")
def operators_add(
    name: Annotated[str, typer.Argument(help="The sign-in name (no spaces).")],
    role: Annotated[str, typer.Option("--role", help="viewer (sees everything, changes nothing), approver, or admin (an approver who also manages operators in the console).")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")] = False,
    by: ByOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Let someone sign in to the operator console; the password is stored as an argon2 hash."""
    _settings()
    parse_operator_name(name)  # a bad name is said before a password is asked for
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise BadInput("no terminal to ask for the password on: pass --password-stdin")
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    out = _admin().add_operator(name, role, password, by=by, note=note)
    _print_json(out.to_json()) if as_json else stdout.print(f"operator {out.name} added ({out.role})", markup=False)


@operators_app.command("list")
def operators_list(as_json: JsonOption = False) -> None:
    """List the console's operators and their roles."""
    _settings(logs_on_first_line=True)
    outs = _admin().list_operators()
    if as_json:
        _print_json([o.to_json() for o in outs])
        return
    for o in outs:
        stdout.print(f"{o.name:<32} {o.role:<9} since {_fmt_time(o.created_at)}", markup=False)
    stdout.print(f"{len(outs)} operator(s)", markup=False)


@operators_app.command("remove")
def operators_remove(name: Annotated[str, typer.Argument()], by: ByOption = None, note: NoteOption = None,
                     as_json: JsonOption = False) -> None:
    """Stop someone signing in; their past decisions keep their name in the audit trail."""
    _settings()
    _admin().remove_operator(name, by=by, note=note)
    _print_json({"removed": name}) if as_json else stdout.print(f"operator {name} removed", markup=False)


# --- the outbox: deliveries people can see ---------------------------------------------------------

outbox_app = typer.Typer(help="Webhook and notification events: what waits, what failed, send again.",
                         no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("list")
def outbox_list(
    status: Annotated[str | None, typer.Option("--status", help="pending, failed or delivered (default: all).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000, help="At most this many events (newest).")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Webhook and notification events, newest first."""
    _settings(logs_on_first_line=True)
    outs = _admin().outbox_events(status, limit=limit)
    if as_json:
        _print_json([o.to_json() for o in outs])
        return
    table = _table()
    for column in ("id", "event", "target", "status", "attempts", "created", "next attempt", "last error"):
        table.add_column(column, overflow="fold")
    for o in outs:
        table.add_row(str(o.id), o.event, o.target, o.status, str(o.attempts), _fmt_time(o.created_at),
                      _fmt_time(o.next_attempt_at), o.last_error or "")
    stdout.print(table)
    stdout.print(f"{len(outs)} event(s)", markup=False)
    for target, n in _admin().outbox_unsent_elsewhere().items():
        then = ("the next retention pass drops them" if target == "notify" else "they are sent if one is")
        stdout.print(f"{n} undelivered {target} event(s) wait for nobody: no {target} target is configured "
                     f"({then})", markup=False)


@outbox_app.command("retry")
def outbox_retry(
    event_id: Annotated[int, typer.Argument(help="An outbox event's id (outbox list).")],
    as_json: JsonOption = False,
) -> None:
    """Send a pending or failed event now: exit 0 when delivered, 1 when refused again, 2 for an unknown id."""
    _settings()
    out = _admin().retry_outbox(event_id)
    _print_json(out.to_json()) if as_json else stdout.print(
        f"outbox event {out.id} ({out.event}) delivered to the {out.target}", markup=False)


@operators_app.command("disable")
def operators_disable(name: Annotated[str, typer.Argument()], by: ByOption = None, note: NoteOption = None,
                      as_json: JsonOption = False) -> None:
    """Stop someone signing in and end their console sessions now (`operators enable` undoes it)."""
    _settings()
    out = _admin().disable_operator(name, by=by, note=note)
    _print_json(out.to_json()) if as_json else stdout.print(f"operator {out.name} disabled", markup=False)


@operators_app.command("enable")
def operators_enable(name: Annotated[str, typer.Argument()], by: ByOption = None, note: NoteOption = None,
                     as_json: JsonOption = False) -> None:
    """Let a disabled operator sign in again."""
    _settings()
    out = _admin().enable_operator(name, by=by, note=note)
    _print_json(out.to_json()) if as_json else stdout.print(f"operator {out.name} enabled", markup=False)


@operators_app.command("role")
def operators_role(
    name: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option("--role", help="viewer, approver or admin.")],
    by: ByOption = None,
    note: NoteOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give an operator another role; it counts from their next request."""
    _settings()
    out = _admin().set_operator_role(name, role, by=by, note=note)
    _print_json(out.to_json()) if as_json else stdout.print(f"operator {out.name} is now {out.role}", markup=False)


@operators_app.command("unlock")
def operators_unlock(name: Annotated[str, typer.Argument()], by: ByOption = None, note: NoteOption = None,
                     as_json: JsonOption = False) -> None:
    """Lift the sign-in throttle's lock on a name now (failed sign-ins lock it for the window)."""
    _settings()
    lifted = _admin().unlock_operator(name, by=by, note=note)
    _print_json({"unlocked": name, "was_locked": lifted}) if as_json else stdout.print(
        f"operator {name} {'unlocked' if lifted else 'was not locked'}", markup=False)


# --- events and processes ------------------------------------------------------------------------


@app.command("report-403")
def report_403(
    guid: Annotated[str, typer.Option("--guid", help="The GUID Halo answered 403 for.")],
    message: Annotated[str | None, typer.Option("--message", help="Halo's error message, if known.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Report a 403 exactly as the application hook does."""
    from worker.hooks import report_forbidden  # the report path only when reporting (start-up time)

    _settings()
    canonical = parse_guid(guid)  # malformed: bad input, exit 2
    if not report_forbidden(canonical, message, source="cli"):
        raise OperationFailed("the report was not taken: the coordination store or broker is unreachable (see the log)")
    _print_json({"taken": True, "guid": canonical}) if as_json else stdout.print(f"reported 403 for {canonical}", markup=False)


@app.command("worker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker_command(ctx: typer.Context) -> None:
    """Run a Celery worker on every queue: Celery's threads pool, 16 at once, unless --pool or
    --concurrency say otherwise (--pool prefork: a process per task; extra arguments go to Celery)."""
    # Celery and the process set-up only for the commands that run it (start-up time of the CLI).
    from worker import process  # noqa: F401  (the worker's signal handlers)
    from worker.celery_app import QUEUES, app as celery_app

    _settings()
    _run_celery_worker(celery_app, ["--queues", ",".join(QUEUES), "--loglevel", "INFO", *pool_defaults(ctx.args)])


# The work waits on Halo, the database and Redis: threads share one process's clients and memory
# (docs/BENCHMARKS.md, "pools": ~83 MB for 16 at once, against ~630 MB PSS for 16 prefork children).
# What threads give up (Celery's time limits, a crash taking every run in flight) is in the README.
DEFAULT_POOL = "threads"
DEFAULT_THREADS = 16


def _given(args: list[str], long: str, short: str) -> str | None:
    """The value of an option as Celery's command line takes it (``--pool x``, ``--pool=x``, ``-P x``,
    ``-Px``), None when absent."""
    for i, arg in enumerate(args):
        if arg in (long, short):
            return args[i + 1] if i + 1 < len(args) else ""
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
        if arg.startswith(short) and not arg.startswith("--") and len(arg) > len(short):
            return arg[len(short):].lstrip("=")
    return None


def pool_defaults(args: list[str]) -> list[str]:
    """``args`` with the threads pool and its concurrency put first unless the caller chose a pool."""
    pool = _given(args, "--pool", "-P")
    added: list[str] = []
    if pool is None:
        pool = DEFAULT_POOL
        added += ["--pool", pool]
    if pool == "threads" and _given(args, "--concurrency", "-c") is None:
        added += ["--concurrency", str(DEFAULT_THREADS)]
    return [*added, *args]


# The environment variables Celery's umbrella command reads as its global options, and the variables
# it sets from them for the app (celery/bin/celery.py); BROKER_URL is ours too, and the same value.
_CELERY_GLOBAL_ENV = {"BROKER_URL": "CELERY_BROKER_URL", "RESULT_BACKEND": "CELERY_RESULT_BACKEND",
                      "LOADER": "CELERY_LOADER", "CONFIG_MODULE": "CELERY_CONFIG_MODULE"}


def _run_celery_worker(celery_app: Any, args: list[str]) -> None:
    """Celery's own ``worker`` command (its options, its start-up), without its umbrella command.

    ``app.worker_main`` goes through ``celery.bin.celery``, which imports every subcommand, among
    them ``amqp``'s REPL (click-repl, prompt_toolkit, wcwidth: ~10.5 MB resident). The worker's parent
    would hold them, and every child map them, for nothing (docs/BENCHMARKS.md, "memory"). The
    umbrella's part for a worker is its context object and the environment variables above.
    """
    # Celery's command-line parts only for the worker command (start-up time of the CLI).
    from celery.bin.base import CLIContext
    from celery.bin.worker import worker as celery_worker

    for ours, celerys in _CELERY_GLOBAL_ENV.items():
        if os.environ.get(ours):
            os.environ[celerys] = os.environ[ours]
    if os.environ.get("SKIP_CHECKS"):
        os.environ["CELERY_SKIP_CHECKS"] = "true"
    celery_worker.params.extend(celery_app.user_options.get("worker", []))
    context = CLIContext(app=celery_app, no_color=bool(os.environ.get("NO_COLOR")), workdir=None, quiet=False)
    celery_worker.main(args=args, prog_name="halo-reconciler worker", obj=context, standalone_mode=False)


@app.command("beat", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def beat_command(ctx: typer.Context) -> None:
    """Run Celery beat: the sweep and the outbox schedule (extra arguments go to Celery)."""
    # Celery and the process set-up only for the commands that run it (start-up time of the CLI).
    from worker import process  # noqa: F401  (beat's signal handlers)
    from worker.celery_app import app as celery_app

    settings = _settings()
    schedule = settings.data_dir / "celerybeat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", "--loglevel", "INFO", "--schedule", str(schedule), *ctx.args])


# --- db ------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Migrate the database schema to this version (a deployment step against PostgreSQL)."""
    _settings()
    db = _db()
    before = db.current_revision()
    db.upgrade_schema()
    after = db.current_revision()
    if as_json:
        _print_json({"from": before, "to": after})
    else:
        stdout.print(f"database schema: {before or 'empty'} -> {after}", markup=False)


@db_app.command("current")
def db_current(as_json: JsonOption = False) -> None:
    """Print the schema revision of the database and the one this code needs."""
    _settings(logs_on_first_line=True)
    db = _db()
    current, head = db.current_revision(), db.head_revision()
    if as_json:
        _print_json({"current": current, "head": head, "up_to_date": current == head})
    else:
        stdout.print(f"current {current or 'empty'}, code needs {head}", markup=False)


# --- embedded ------------------------------------------------------------------------------------

embedded_app = typer.Typer(help="The embedded Valkey server (broker and coordination store without BROKER_URL).",
                           no_args_is_help=True)
app.add_typer(embedded_app, name="embedded")


@embedded_app.command("stop")
def embedded_stop(as_json: JsonOption = False) -> None:
    """Stop the embedded Valkey server of the data directory (queued tasks are kept on disk); nothing
    running is fine too."""
    # The Valkey client only for `embedded stop` (start-up time).
    from worker.coordination import embedded_server_pid, stop_embedded_server

    settings = _settings()
    pid = embedded_server_pid(settings)
    stopped = stop_embedded_server(settings) or pid is not None
    if as_json:
        _print_json({"stopped": stopped, "pid": pid if stopped else None, "data_dir": str(settings.data_dir)})
    elif stopped:
        stdout.print(f"stopped the embedded Valkey server (pid {pid or 'unknown'}) in {settings.data_dir}",
                     markup=False)
    else:
        stdout.print(f"no embedded Valkey server was running in {settings.data_dir}", markup=False)


@app.command("health")
def health(
    skip_halo: Annotated[bool, typer.Option("--skip-halo", help="Do not call Halo (saves a call per check).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Check the database, the broker, the last sweep and Halo; exit 1 with the reasons when unhealthy."""
    from worker.health import run_checks  # health's clients only for `health` (start-up time)

    checks = run_checks(_settings(), halo=not skip_halo)
    healthy = all(check.ok for check in checks)
    if as_json:
        _print_json({"healthy": healthy, "checks": [check.to_json() for check in checks]})
    else:
        for check in checks:
            (stdout if check.ok else stderr).print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}",
                                                   markup=False)
    if not healthy:
        raise typer.Exit(1)


# --- retention -------------------------------------------------------------------------------------

retention_app = typer.Typer(help="Keep the audit bounded: fold old routine verifications.", no_args_is_help=True)
app.add_typer(retention_app, name="retention")


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would fold; change nothing.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Fold routine `unchanged` verifications older than HALO_RECONCILER_RETENTION_DAYS into daily counts."""
    _settings()
    summary = _admin().run_retention(dry_run=dry_run)
    if as_json:
        _print_json(summary.to_json())
    elif dry_run:
        stdout.print(f"would fold {summary.folded} routine verification(s) started before {summary.cutoff:%Y-%m-%d %H:%M} UTC",
                     markup=False)
    else:
        stdout.print(f"folded {summary.folded} routine verification(s) started before {summary.cutoff:%Y-%m-%d %H:%M} UTC "
                     f"into {summary.day_rows} daily count(s), in {summary.batches} batch(es) "
                     f"(longest {summary.longest_batch_ms:.0f} ms)", markup=False)
    if summary.outbox_dropped and not as_json:
        stdout.print(f"{'would drop' if dry_run else 'dropped'} {summary.outbox_dropped} undelivered notification "
                     "event(s): no notification URL is configured to send them to", markup=False)


# --- simulator and demo ----------------------------------------------------------------------------


@app.command("simulator")
def simulator(
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port; 0 picks a free one.", min=0, max=65535)] = 8080,
    key: Annotated[str | None, typer.Option("--key", envvar="HALO_SIMULATOR_KEY",
                                            help="Answer 401 to calls without this subscription key.")] = None,
    sites: Annotated[Path | None, typer.Option("--sites", help='JSON file {"sites": [...]} in the shape Find sites returns.')] = None,
    practices: Annotated[int, typer.Option("--practices", help="Seed this many generated practices.", min=0, max=1_000_000)] = 0,
) -> None:
    """Serve a Halo Cloud simulator until stopped."""
    from worker.simulator.server import run_simulator  # the simulator's server only here (start-up time)

    _settings()
    run_simulator(host=host, port=port, key=key, sites_file=sites, practices=practices)


@app.command("demo")
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's data directory.")] = False,
    serve: Annotated[bool, typer.Option(
        "--serve", help="Then keep the simulator, worker and beat running, serve the console and print how to sign "
                        "in; Ctrl-C stops everything.")] = False,
    port: Annotated[int, typer.Option("--port", help="The console's port with --serve (a free one if taken).",
                                      min=1, max=65535)] = 8000,
) -> None:
    """Run the whole thing on the embedded default against a simulator, and show what it did."""
    from worker.demo import run_demo  # the demo only for `demo` (start-up time)

    raise typer.Exit(run_demo(keep=keep, serve=serve, port=port))


# Package data (pyproject.toml), so an installed wheel and the container image have them too;
# deploy/prometheus/alerts.yml in the repository is a link to this file.
ALERT_RULES = ("worker", "prometheus/alerts.yml")


@app.command("alert-rules")
def alert_rules(
    runbook_url: Annotated[str | None, typer.Option(
        "--runbook-url", help="Where your team reads docs/RUNBOOK.md (default: HALO_RECONCILER_RUNBOOK_URL).")] = None,
) -> None:
    """Print the Prometheus alert rules with each runbook_url absolute (Alertmanager links need it)."""
    import re  # only for this command (start-up time)
    from importlib import resources  # only for this command (start-up time)

    settings = _settings(logs_on_first_line=True)
    base = (runbook_url or settings.runbook_url or "").strip().split("#", 1)[0]
    if not base.startswith(("https://", "http://")):
        raise BadInput("name where docs/RUNBOOK.md is read: --runbook-url https://... (or HALO_RECONCILER_RUNBOOK_URL)")
    package, name = ALERT_RULES
    try:
        rules = resources.files(package).joinpath(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise OperationFailed(f"the alert rules ({package}/{name}) are missing from this installation: {exc}") from None
    rendered = re.sub(r'runbook_url: "docs/RUNBOOK\.md#([\w-]+)"', lambda m: f'runbook_url: "{base}#{m.group(1)}"', rules)
    sys.stdout.write(rendered)


# --- the HTTP API ----------------------------------------------------------------------------------


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=1, max=65535)] = 8000,
) -> None:
    """Serve the HTTP API (/v1, bearer tokens from HALO_RECONCILER_API_TOKENS) and /healthz, /readyz."""
    from worker.serve import run_server  # starlette and uvicorn only for `serve` (start-up time)

    run_server(_settings(), host=host, port=port)


# --- entry point ---------------------------------------------------------------------------------


def _fail(code: int, message: str) -> int:
    first_line = " ".join(message.split()) or "failed"
    sys.stderr.write(f"halo-reconciler: error: {first_line}\n")
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the command line; map every expected failure to one line on stderr and an exit code."""
    try:
        # Without standalone mode, a typer.Exit raised by a command comes back as the return value.
        returned = app(args=argv, prog_name="halo-reconciler", standalone_mode=False)
        if isinstance(returned, int):
            return returned
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return _fail(130, "interrupted")
    except typer.TyperException as exc:  # usage errors: unknown command or option, bad value
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return _fail(2, message)
    except (BadInput, InvalidGuid) as exc:
        return _fail(2, str(exc))
    except HaloUnauthorized as exc:
        return _fail(1, f"Halo refused the subscription key (401: {exc.message}); check HALO_SUBSCRIPTION_KEY and HALO_BASE_URL (stage and production keys differ)")
    except HaloError as exc:
        return _fail(1, f"Halo Cloud: {exc.message}")
    except (OperationFailed, ReconcilerError) as exc:
        return _fail(1, str(exc))
    except CoordinationUnavailable as exc:
        return _broker_unreachable(exc)
    except KeyboardInterrupt:
        return _fail(130, "interrupted")
    except Exception as exc:
        return _expected_elsewhere(exc)
    return 0


def _loaded(module: str, name: str) -> type[BaseException]:
    """An error type of a module this process imported. A module never imported raised nothing, so
    the check imports nothing (start-up time) and matches nothing."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else _NeverRaised


class _NeverRaised(Exception):
    pass


def _broker_unreachable(exc: Exception) -> int:
    # The message names host and port, never the URL (it may carry a password).
    return _fail(1, f"the broker (Redis) is unreachable: {exc}; nothing was queued")


def _expected_elsewhere(exc: Exception) -> int:
    """The expected failures whose types live in modules a command may not have imported (the
    settings, the database, the broker), then the CLI edge for everything else."""
    if isinstance(exc, _loaded("worker.config", "ConfigError")):
        return _fail(2, str(exc))
    if isinstance(exc, _loaded("worker.db", "DatabaseError")):
        return _fail(1, str(exc))
    if isinstance(exc, _loaded("kombu.exceptions", "OperationalError")):
        return _broker_unreachable(exc)
    # The CLI edge: log the trace for the operator, print one line.
    logs.get_logger().error("command_failed", exc_info=True)  # a listing's logging is configured here
    return _fail(1, f"unexpected {type(exc).__name__}: {exc}")


def run() -> None:
    # pydantic looks for plugins by scanning every installed distribution's entry points the first
    # time it builds a validator (~5 ms of each start); none of ours has any. PYDANTIC_DISABLE_PLUGINS
    # is pydantic's documented switch; a value the user set (even empty) is left alone.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        code = main()
    finally:
        # The interpreter's exit collects garbage over every object still alive (the modules, the
        # ORM's registries): ~250 ms of CPU after a listing has printed. Frozen objects are skipped,
        # and nothing is left to do but exit; atexit handlers and finalizers still run.
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
