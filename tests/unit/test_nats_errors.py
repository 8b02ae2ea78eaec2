"""JetStream error codes are known in one module (`adapters/nats/errors.py`): what each
code means, in either form an error arrives (nats-py's APIError, our PublishRejected), and
that no other module of the service compares a number."""

from __future__ import annotations

import ast
from pathlib import Path

import nats.errors
import pytest
from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError

from titan_exec.adapters.nats import errors
from titan_exec.adapters.nats.errors import (
    DuplicateInProcess,
    NoResponders,
    PublishRejected,
    RefusedWhileReplicating,
    WrongLastSequence,
    error_code,
    is_duplicate_in_process,
    is_no_message,
    is_no_responders,
    is_refused_while_replicating,
    is_stream_name_in_use,
    is_subjects_overlap,
    is_wrong_last_sequence,
    reply_error_code,
)
from titan_exec.adapters.nats.fence import is_fence_rejection
from titan_exec.adapters.nats.lease import CallLost, CallUnavailable, _classify

SRC = Path(__file__).resolve().parents[2] / "src" / "titan_exec"

CLASSIFIERS = {
    10071: is_wrong_last_sequence,
    10164: is_refused_while_replicating,
    10158: is_duplicate_in_process,
    10037: is_no_message,
    10058: is_stream_name_in_use,
    10065: is_subjects_overlap,
    503: is_no_responders,
}


@pytest.mark.parametrize(
    ("code", "named"),
    [
        (10071, WrongLastSequence),
        (10164, RefusedWhileReplicating),
        (10158, DuplicateInProcess),
        (503, NoResponders),
    ],
)
def test_the_publisher_names_the_refusals_it_knows(code: int, named: type) -> None:
    err = PublishRejected.of(code, "refused")
    assert type(err) is named and isinstance(err, PublishRejected)
    assert (err.code, err.description, str(err)) == (code, "refused", f"{code}: refused")


def test_an_unknown_code_stays_a_plain_rejection() -> None:
    err = PublishRejected.of(10077, "another refusal")
    assert type(err) is PublishRejected and err.code == 10077


@pytest.mark.parametrize("code", sorted(CLASSIFIERS))
def test_each_code_is_recognised_in_both_forms_and_by_its_own_classifier_only(
    code: int,
) -> None:
    for err in (PublishRejected(code, "x"), APIError(code=400, err_code=code)):
        assert error_code(err) == code
        assert [c for c, is_it in CLASSIFIERS.items() if is_it(err)] == [code]


def test_the_http_like_status_of_an_api_error_is_not_its_code() -> None:
    """nats-py's `code` is the HTTP-like status (400, 404, 503); only `err_code` counts."""
    unavailable = APIError(code=503, err_code=None, description="JetStream not ready")
    assert error_code(unavailable) is None and not is_no_responders(unavailable)
    assert not is_no_message(NotFoundError(code=404, err_code=10059))  # stream not found


def test_errors_without_a_code_are_none_of_them() -> None:
    folded = KeyWrongLastSequenceError(description="wrong last sequence")  # no err_code
    for err in (folded, RuntimeError("wrong last sequence"), nats.errors.TimeoutError()):
        assert error_code(err) is None
        assert not any(is_it(err) for is_it in CLASSIFIERS.values())


def test_reply_error_codes() -> None:
    assert reply_error_code({"code": 400, "err_code": 10071, "description": "d"}) == 10071
    assert reply_error_code({"code": 503}) == 503
    assert reply_error_code({}) == 0
    assert reply_error_code({"err_code": "not a number"}) == 0


def test_a_fence_rejection_is_a_wrong_last_sequence_in_either_form() -> None:
    assert is_fence_rejection(APIError(code=400, err_code=10071))
    assert is_fence_rejection(PublishRejected.of(10071, "wrong last sequence: 7"))
    assert not is_fence_rejection(APIError(code=400, err_code=10164))
    assert not is_fence_rejection(PublishRejected.of(503, "no responders"))


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (APIError(code=400, err_code=10164), CallUnavailable),
        (APIError(code=400, err_code=10071), CallLost),
        # nats-py's KV error has no err_code: it must be classified, not crash
        (KeyWrongLastSequenceError(description="wrong last sequence"), CallLost),
        (TimeoutError(), CallUnavailable),
        (nats.errors.NoRespondersError(), CallUnavailable),
        (ConnectionResetError(), CallUnavailable),
    ],
)
def test_the_lease_maps_every_error_to_lost_or_cannot_tell(
    exc: Exception, outcome: type[CallLost | CallUnavailable]
) -> None:
    assert isinstance(_classify(exc), outcome)


def test_the_lease_leaves_a_bug_a_bug() -> None:
    assert _classify(ValueError("a programming error")) is None


def _code_literals(path: Path, codes: set[int]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(SRC)}:{node.lineno}: {node.value}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value in codes
    ]


def test_no_other_module_of_the_service_compares_a_jetstream_code() -> None:
    jetstream_codes = {code for code in CLASSIFIERS if code != 503} | {errors.STREAM_NOT_FOUND}
    found = [
        hit
        for path in sorted(SRC.rglob("*.py"))
        if path != SRC / "adapters" / "nats" / "errors.py"
        for hit in _code_literals(path, jetstream_codes)
    ]
    # 503 is an HTTP status elsewhere (the admin API, the venue simulator): only the NATS
    # adapters must not know it as "no responders"
    found += [
        hit
        for path in sorted((SRC / "adapters" / "nats").glob("*.py"))
        if path.name != "errors.py"
        for hit in _code_literals(path, {503})
    ]
    assert found == []
