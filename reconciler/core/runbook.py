"""Where docs/RUNBOOK.md says what to do about each ticket: one table, read by the console's ticket
pages and by the alert rules' rendering (``halo-reconciler alert-rules``).

Anchors are GitHub's slugs of the runbook's headings (lower case, punctuation dropped, spaces to
hyphens), so ``RUNBOOK_URL#anchor`` opens the section wherever the Markdown is rendered.
"""

from __future__ import annotations

import re

from reconciler.core.vocabulary import TicketReason

RUNBOOK_PATH = "docs/RUNBOOK.md"

SECTIONS: dict[TicketReason, str] = {
    TicketReason.FORBIDDEN_PERSISTS: "2. Verdicts",
    TicketReason.INFRASTRUCTURE_CHANGE: "4. Held changes",
    TicketReason.BUSINESS_CHANGE: "4. Held changes",
    TicketReason.PAIRING_REQUIRED: "4. Held changes",
    TicketReason.NOT_FOUND: "2. Verdicts",
    TicketReason.AMBIGUOUS: "2. Verdicts",
    TicketReason.FLAPPING: "2. Verdicts",
    TicketReason.IP_NOT_ALLOWED: "Halo 403: `Caller Ip Not Allowed`",
    TicketReason.QUOTA_EXCEEDED: "Halo 403: quota exceeded",
    TicketReason.UNAUTHORIZED: "Halo 401 (key refused)",
    TicketReason.MASS_CHANGE: "5. Pausing and resuming auto-switching",
    TicketReason.UNAVAILABLE_PERSISTS: "Halo answers 429 (rate limited), 5xx or times out",
}


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: ``Halo 401 (key refused)`` -> ``halo-401-key-refused``."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def section_for(reason: str) -> tuple[str, str]:
    """``(heading, anchor)`` of the runbook section for a ticket's reason."""
    heading = SECTIONS.get(TicketReason(reason), "3. Tickets") if reason in set(TicketReason) else "3. Tickets"
    return heading, slug(heading)


def link(base: str, anchor: str) -> str:
    """``base`` (where RUNBOOK.md is read) with the section's anchor."""
    return f"{base.split('#', 1)[0]}#{anchor}"
