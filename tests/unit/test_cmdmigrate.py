"""The pure part of `titan-exec nats migrate`: which stream is which, the steps from every
state a migration can be found in (so that an interrupted one resumes), and the forms a
message takes in the copy and back (headers the server acts on moved out of the way,
`Nats-Msg-Id` restored except where it repeats)."""

from __future__ import annotations

import pytest
from nats.js.api import RetentionPolicy, StreamConfig

from titan_exec.adapters.nats import cmdplan as mig
from titan_exec.adapters.nats.cmdplan import CmdKind, Step, StoredMsg

WQ, LIMITS = RetentionPolicy.WORK_QUEUE, RetentionPolicy.LIMITS


def cfg(subjects: list[str], retention: RetentionPolicy, name: str = "TITAN_CMD") -> StreamConfig:
    return StreamConfig(name=name, subjects=subjects, retention=retention)


OLD = cfg(["titan.cmd.>"], WQ)
CLOSED = cfg([mig.CLOSED_SUBJECT], WQ)
RESTORING = cfg([mig.RESTORE_PREFIX + ">"], LIMITS)
OURS = cfg(["titan.cmd.>", "extra.>"], LIMITS)
COPY = mig.copy_config(1)


@pytest.mark.parametrize(
    ("stream", "kind"),
    [
        (None, CmdKind.ABSENT),
        (OLD, CmdKind.OLD),
        (CLOSED, CmdKind.OLD_CLOSED),
        (RESTORING, CmdKind.RESTORING),
        (OURS, CmdKind.OURS),
        (cfg(["titan.cmd.>", "other.>"], WQ), CmdKind.UNKNOWN),
        (cfg(["titan.cmd.exec.>"], LIMITS), CmdKind.UNKNOWN),
        (cfg(["titan.cmd.>"], RetentionPolicy.INTEREST), CmdKind.UNKNOWN),
    ],
)
def test_the_command_stream_is_recognised_by_its_subjects_and_retention(
    stream: StreamConfig | None, kind: CmdKind
) -> None:
    assert mig.classify_cmd(stream) is kind


FULL = (
    Step.COPY,
    Step.VERIFY_COPY,
    Step.DELETE_OLD,
    Step.CREATE,
    Step.RESTORE,
    Step.VERIFY_RESTORE,
    Step.OPEN,
    Step.DELETE_COPY,
)


@pytest.mark.parametrize(
    ("stream", "copy", "steps"),
    [
        (None, None, ()),
        (OURS, None, ()),
        (OLD, None, (Step.CLOSE, *FULL)),
        (OLD, COPY, (Step.CLOSE, Step.DISCARD_COPY, *FULL)),
        (CLOSED, None, FULL),
        (CLOSED, COPY, (Step.DISCARD_COPY, *FULL)),
        (None, COPY, FULL[3:]),
        (RESTORING, COPY, FULL[4:]),
        (RESTORING, None, (Step.OPEN,)),
        (OURS, COPY, (Step.VERIFY_KEPT, Step.DELETE_COPY)),
    ],
)
def test_every_state_of_a_migration_has_its_remaining_steps(
    stream: StreamConfig | None, copy: StreamConfig | None, steps: tuple[Step, ...]
) -> None:
    plan = mig.plan_migration(stream, copy)
    assert plan.refusal is None and plan.steps == steps
    assert plan.summary.startswith("nothing to do") == (not steps)


def test_the_old_stream_is_never_deleted_before_its_copy_is_verified() -> None:
    for stream, copy in ((OLD, None), (OLD, COPY), (CLOSED, None), (CLOSED, COPY)):
        steps = mig.plan_migration(stream, copy).steps
        assert steps.index(Step.VERIFY_COPY) < steps.index(Step.DELETE_OLD)
        assert steps.index(Step.VERIFY_RESTORE) < steps.index(Step.DELETE_COPY)


def test_streams_it_does_not_know_are_refused() -> None:
    plan = mig.plan_migration(cfg(["titan.cmd.>", "other.>"], WQ), None)
    assert plan.steps == () and "not a stream this tool knows" in (plan.refusal or "")
    plan = mig.plan_migration(OLD, cfg(["someone.>"], LIMITS, name=mig.COPY))
    assert plan.steps == () and "that this tool did not make" in (plan.refusal or "")


def msg(seq: int, headers: tuple[tuple[str, str], ...], subject: str = "titan.cmd.x") -> StoredMsg:
    return StoredMsg(seq=seq, subject=subject, headers=headers, data=b"{}")


def test_a_message_goes_to_the_copy_and_back_with_its_headers() -> None:
    original = msg(
        7,
        (
            ("Nats-Msg-Id", "sig-1"),
            ("X-Trace", "t"),
            ("Nats-Expected-Last-Sequence", "6"),
            ("Titan-Migrate-Seq", "own"),
        ),
    )
    subject, headers = mig.copy_form(original)
    assert subject == "titan-migrate.copy.titan.cmd.x"
    assert headers == {
        "Titan-Migrate-Seq": "7",
        "Titan-Migrate-Nats-Msg-Id": "sig-1",
        "X-Trace": "t",
        "Titan-Migrate-Nats-Expected-Last-Sequence": "6",
        "Titan-Migrate-Titan-Migrate-Seq": "own",
    }
    copy = StoredMsg(seq=1, subject=subject, headers=tuple(headers.items()), data=b"{}")
    seen: set[str] = set()
    back_subject, back = mig.restored_form(copy, seen)
    assert back_subject == "titan.cmd.x"
    assert back == {
        "Nats-Msg-Id": "sig-1",
        "X-Trace": "t",
        # a condition of the original publish: cannot be checked again
        "Titan-Migrate-Nats-Expected-Last-Sequence": "6",
        "Titan-Migrate-Seq": "own",
    }
    assert seen == {"sig-1"}
    # a later message repeating that id keeps it out of the server's way
    _, again = mig.restored_form(copy, seen)
    assert again["Titan-Migrate-Nats-Msg-Id"] == "sig-1" and "Nats-Msg-Id" not in again


def test_header_blocks_are_parsed_in_order_and_inexact_ones_are_flagged() -> None:
    headers, exact = mig.parse_headers(b"NATS/1.0\r\nNats-Msg-Id: a\r\nX:  b \r\n\r\n")
    assert headers == (("Nats-Msg-Id", "a"), ("X", "b")) and exact
    _, exact = mig.parse_headers(b"NATS/1.0\r\nX: a\r\nX: b\r\n\r\n")
    assert not exact
    _, exact = mig.parse_headers(b"NATS/1.0\r\nX: \xff\r\n\r\n")
    assert not exact


def test_the_survey_counts_what_the_dry_run_reports() -> None:
    s = mig.Survey()
    s.add(msg(3, (("Nats-Msg-Id", "a"),)))
    s.add(msg(5, (("Nats-Msg-Id", "a"), ("Nats-Expected-Stream", "TITAN_CMD"))))
    s.add(StoredMsg(seq=6, subject="titan.cmd.\ufffd", headers=(), data=b"xy", is_exact=False))
    assert (s.messages, s.first_seq, s.last_seq, s.bytes) == (3, 3, 6, 6)
    assert s.with_msg_id == 2 and s.repeated_ids == [5] and s.inexact == [6]
    assert s.other_nats_headers == {"Nats-Expected-Stream": 1}
