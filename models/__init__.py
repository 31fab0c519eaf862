"""SQLModel tables. Importing this package registers every table on ``SQLModel.metadata``."""

from reconciler.core.vocabulary import (
    Action,
    Availability,
    ForbiddenCause,
    PmsType,
    PracticeState,
    SiteStatus,
    TicketKind,
    TicketReason,
    TicketStatus,
    Trigger,
    Verdict,
)
from models.approval import Approval
from models.decision import OperatorDecision
from models.guard import ControlFlag
from models.guid_history import GuidHistory
from models.operator import ConsoleSession, Operator, SigninThrottle
from models.outbox import OutboxEvent
from models.practice import Practice
from models.reconciliation import Reconciliation
from models.ticket import Ticket
from models.verification_day import VerificationDay

__all__ = [
    "Action",
    "Approval",
    "ConsoleSession",
    "SigninThrottle",
    "Availability",
    "ControlFlag",
    "ForbiddenCause",
    "GuidHistory",
    "Operator",
    "OperatorDecision",
    "OutboxEvent",
    "PmsType",
    "Practice",
    "PracticeState",
    "Reconciliation",
    "SiteStatus",
    "Ticket",
    "TicketKind",
    "TicketReason",
    "TicketStatus",
    "Trigger",
    "Verdict",
    "VerificationDay",
]
