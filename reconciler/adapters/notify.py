"""Ticket notifications where people already look: Slack, Teams, e-mail, PagerDuty and the rest,
through Apprise URLs (``HALO_RECONCILER_NOTIFY_URLS``).

A notification is composed from the outbox row alone (the ticket as it was when the event was
written) and carries the practice's name and links to the ticket's and the practice's console pages
(``HALO_RECONCILER_CONSOLE_URL``: ``/tickets/{id}``, ``/practices/{id}``). It never
carries a secret: the text is built from the ticket's public fields only, and any configured secret
that still shows up in it (a detail quoting something it should not) is blanked.

Each URL is its own Apprise instance, so the outbox can record which URLs took an event and retry
only the others. URLs are remembered by fingerprint, never by value: they hold tokens and passwords.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import apprise

REDACTED = "[redacted]"


class NotificationRejected(Exception):
    """At least one notification URL did not take the event. The message names schemes and
    fingerprints, never a URL; ``delivered`` holds the fingerprints that did take it."""

    def __init__(self, message: str, delivered: Sequence[str]) -> None:
        super().__init__(message)
        self.delivered = list(delivered)


class InvalidNotifyUrl(ValueError):
    """Apprise cannot parse this URL (the message names its position and scheme, never its value)."""


@dataclass(frozen=True)
class Notice:
    title: str
    body: str
    kind: str  # an apprise.NotifyType value: info, success, warning, failure


def fingerprint(url: str) -> str:
    """A stable short name for a URL that reveals nothing of it (for rows, logs and errors)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "?"


def _apprise() -> ModuleType:
    """Apprise (~15 MB resident, a hundred plugin modules) only where notifications are configured:
    every worker process and the command line import this module through the outbox."""
    import apprise  # only with notification URLs (memory and start-up time); worker.process imports it before the fork

    return apprise


def check_urls(urls: Iterable[str]) -> tuple[str, ...]:
    """Every URL Apprise can build a notifier from, in order; the first one it cannot is an error."""
    checked = []
    for position, url in enumerate(urls, start=1):
        if _apprise().Apprise.instantiate(url) is None:
            raise InvalidNotifyUrl(f"entry {position} ({_scheme(url)}://...) is not a URL Apprise can send to")
        checked.append(url)
    return tuple(checked)


def ticket_link(public_url: str | None, ticket_id: int) -> str | None:
    return f"{public_url.rstrip('/')}/tickets/{ticket_id}" if public_url else None


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def compose(payload: dict[str, Any], *, public_url: str | None, secrets: Sequence[str] = ()) -> Notice:
    """The notification for one outbox event (``{"event": "ticket.opened", "ticket": {...}}``)."""
    event = str(payload.get("event", "ticket.updated")).removeprefix("ticket.")
    ticket = payload.get("ticket") or {}
    ticket_id = ticket.get("id")
    what = f"{ticket.get('kind')} / {ticket.get('reason')}"
    practice_id, name = ticket.get("practice_id"), payload.get("practice_name")
    scope = "integrator-wide" if practice_id is None else (
        f"practice {practice_id} ({name})" if name else f"practice {practice_id}")
    occurrences = ticket.get("occurrences", 1)
    if name:
        what += f" for {name}"
    if event == "opened":
        title, kind = f"Ticket #{ticket_id} opened: {what}", "warning"
    elif event == "repeated":
        title, kind = f"Ticket #{ticket_id} seen {occurrences} times: {what}", "warning"
    elif event == "resolved":
        title, kind = f"Ticket #{ticket_id} resolved: {what}", "success"
    else:
        title, kind = f"Ticket #{ticket_id} {event}: {what}", "info"
    lines = [
        str(ticket.get("detail") or ""),
        "",
        f"Scope: {scope}. Status: {ticket.get('status')}. Seen {occurrences} time(s), "
        f"opened {ticket.get('opened_at')}, last seen {ticket.get('last_seen_at')}.",
    ]
    if ticket.get("resolved_at"):
        lines.append(f"Resolved {ticket['resolved_at']}.")
    link = ticket_link(public_url, ticket_id) if ticket_id is not None else None
    if public_url and practice_id is not None:
        lines.append(f"The practice: {public_url.rstrip('/')}/practices/{practice_id}")
    if link:
        lines.append(f"Open it in the console: {link}")
    return Notice(title=_redact(f"[halo-reconciler] {title}", secrets), body=_redact("\n".join(lines), secrets),
                  kind=kind)


class AppriseNotifier:
    """Sends one notice to each configured URL, skipping those that already took it."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._targets: list[tuple[str, str, apprise.Apprise]] = []
        for url in check_urls(urls):
            instance = _apprise().Apprise()
            instance.add(url)
            self._targets.append((fingerprint(url), _scheme(url), instance))

    @property
    def fingerprints(self) -> list[str]:
        return [name for name, _, _ in self._targets]

    def send(self, notice: Notice, *, already: Iterable[str] = ()) -> list[str]:
        """Send to every URL not in ``already``; returns the fingerprints that took it, ``already``
        included. Raises ``NotificationRejected`` (after trying them all) when any URL failed."""
        done = list(already)
        failed = []
        for name, scheme, instance in self._targets:
            if name in done:
                continue
            if instance.notify(title=notice.title, body=notice.body, notify_type=notice.kind):
                done.append(name)
            else:
                failed.append(f"{scheme} ({name})")
        if failed:
            raise NotificationRejected("not delivered to " + ", ".join(failed), done)
        return done
