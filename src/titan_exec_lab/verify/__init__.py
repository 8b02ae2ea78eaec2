"""`titan-exec verify`: the invariants of design/ha-protocol.md §10 checked independently,
from the raw JetStream streams and the venue simulator's own record, never from an
instance's view of itself. Imports no service code: nats-py, the standard library and the
JSON found on the wire.

- `read`: the only I/O (`read_stream`, `read_streams`, `read_inspect`, `read_statuses`);
- `facts`: what the raw data says (folds over the messages and documents, pure);
- `invariants`: the checks over what was read (`check` → `report.Report`, pure), and
  `status_violations`, what the `/status` documents alone show (`titan-exec status`).

The one checker of the pair's invariants: `titan-exec verify`, the chaos runner, the demo
(`titan_exec_lab.demo.streamcheck`, its PASS/FAIL view), the integration tests and
`titan-exec status` all judge with it.
"""

from titan_exec_lab.verify.invariants import (
    Counts,
    Problem,
    Report,
    Violation,
    check,
    coid_counts,
    decision_counts,
    decisions_per_command,
    status_violations,
)
from titan_exec_lab.verify.read import CannotRead, RawMsg, read_inspect, read_statuses, read_stream

__all__ = [
    "CannotRead",
    "Counts",
    "Problem",
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
    "status_violations",
]
