"""`titan-exec verify`: the invariants of design/ha-protocol.md §10 checked independently,
from the raw JetStream streams and the venue simulator's own record, never from an
instance's view of itself. Imports no service code: nats-py, the standard library and the
JSON found on the wire.

- `read`: the only I/O (`read_stream`, `read_streams`, `read_inspect`, `read_statuses`);
- `facts`: what the raw data says (folds over the messages and documents, pure);
- `invariants`: the checks over what was read (`check` → `report.Report`, pure).
"""

from titan_exec_lab.verify.invariants import (
    Counts,
    Report,
    Violation,
    check,
    coid_counts,
    decision_counts,
    decisions_per_command,
)
from titan_exec_lab.verify.read import CannotRead, RawMsg, read_inspect, read_statuses, read_stream

__all__ = [
    "CannotRead",
    "Counts",
    "RawMsg",
    "Report",
    "Violation",
    "check",
    "coid_counts",
    "decision_counts",
    "decisions_per_command",
    "read_inspect",
    "read_statuses",
    "read_stream",
]
