"""The error registry of ``proofmarket.core.errors``: one class per code, declared headers, ``from_code``."""

from __future__ import annotations

import pickle

import pytest

from proofmarket.core import errors
from proofmarket.core.errors import ProofMarketError, error_codes, from_code

# every class moved into core.errors from another module keeps the code, HTTP status and exit code it had there
MOVED = {
    "UnknownJob": ("unknown_job", 404, 2), "IdempotencyConflict": ("idempotency_conflict", 409, 2),
    "JobInterrupted": ("interrupted", 503, 3), "DatabaseError": ("database_error", 500, 2),
    "DuplicateJob": ("duplicate_job", 409, 2), "UnknownRequest": ("unknown_request", 404, 2),
    "InputMismatch": ("input_mismatch", 422, 2), "RequestClosed": ("request_closed", 409, 2),
    "UseCourt": ("use_court", 409, 2), "EscrowUnavailable": ("escrow_unavailable", 404, 2),
    "CourtUnavailable": ("court_unavailable", 404, 2), "ModelInactive": ("model_inactive", 409, 2),
    "MarketUnavailable": ("market_unavailable", 404, 2), "Unauthorized": ("unauthorized", 401, 2),
    "BodyTooLarge": ("body_too_large", 413, 2), "RequestInvalid": ("invalid_request", 422, 2),
    "RouteNotFound": ("not_found", 404, 2), "MethodNotAllowed": ("method_not_allowed", 405, 2),
    "InternalError": ("internal_error", 500, 2),
}


def tree_classes() -> list[type[ProofMarketError]]:
    return [c for c in vars(errors).values()
            if isinstance(c, type) and issubclass(c, ProofMarketError) and c is not ProofMarketError]


@pytest.mark.parametrize("name", sorted(MOVED))
def test_a_moved_class_keeps_its_code_status_and_exit_code(name: str) -> None:
    cls = getattr(errors, name)
    assert (cls.code, cls.http_status, cls.exit_code) == MOVED[name]
    assert error_codes()[cls.code] is cls


BRANCH_EXIT = {errors.VerificationFailed: 1, errors.UsageError: 2, errors.ModelError: 2, errors.InputError: 2,
               errors.StoreError: 2, errors.ProvingError: 3, errors.QueueUnavailable: 4, errors.NodeUnavailable: 4,
               errors.ChainError: 4, errors.PaymentError: 5, errors.InternalError: 2}


@pytest.mark.parametrize("cls", tree_classes(), ids=lambda c: c.__name__)
def test_every_class_exits_with_its_branch_code(cls: type[ProofMarketError]) -> None:
    branch = next(b for b in cls.__mro__ if b in BRANCH_EXIT)  # every class is under one documented branch
    assert cls.exit_code == BRANCH_EXIT[branch]
    assert 400 <= cls.http_status < 600 and error_codes()[cls.code] is cls


def test_a_second_class_cannot_take_a_code() -> None:
    taken = r"'unknown_job' of .*\.Impostor is taken by proofmarket\.core\.errors\.UnknownJob"
    with pytest.raises(TypeError, match=taken):
        class Impostor(errors.UsageError, code="unknown_job"): ...
    assert error_codes()["unknown_job"] is errors.UnknownJob


def test_a_subclass_without_a_code_inherits_and_does_not_register() -> None:
    class Detail(errors.PaymentRejected, http_status=418): ...

    assert (Detail.code, Detail.http_status, Detail.exit_code) == ("payment_rejected", 418, 5)
    assert error_codes()["payment_rejected"] is errors.PaymentRejected
    assert errors.PaymentRejected.http_status == 402


@pytest.mark.parametrize("cls", tree_classes(), ids=lambda c: c.__name__)
def test_from_code_rebuilds_every_class(cls: type[ProofMarketError]) -> None:
    exc = from_code(cls.code, "it failed", {"job_id": "j1"})
    assert type(exc) is cls
    assert (exc.code, exc.message, exc.details, exc.http_status) == (cls.code, "it failed", {"job_id": "j1"},
                                                                     cls.http_status)


def test_from_code_keeps_an_unknown_code_on_the_default_class() -> None:
    exc = from_code("teapot_on_fire", "hot", default=errors.ProvingError)
    assert type(exc) is errors.ProvingError
    assert (exc.code, exc.message, exc.details, exc.exit_code) == ("teapot_on_fire", "hot", {}, 3)
    assert type(from_code("teapot_on_fire", "hot")) is ProofMarketError
    assert errors.ProvingError.code == "proving_failed"  # the instance's code, not the class's
    # a detail named like the message argument does not break the rebuild
    assert from_code("unknown_job", "gone", {"message": "x", "job_id": "j"}).details == {"job_id": "j"}


def test_headers_are_declared_by_the_class_or_set_on_an_instance() -> None:
    assert dict(errors.Unauthorized("no").headers) == {"WWW-Authenticate": "Bearer"}
    assert dict(errors.PaymentRequired("pay").headers) == {}
    with pytest.raises(TypeError):  # the class's headers are shared: read-only
        errors.Unauthorized("no").headers["X-Leak"] = "1"  # type: ignore[index]
    err = errors.PaymentRequired("pay")
    err.headers = {"PAYMENT-REQUIRED": "e30="}
    assert dict(errors.PaymentRequired("again").headers) == {}
    again = pickle.loads(pickle.dumps(err))
    assert (type(again), again.message, dict(again.headers)) == (errors.PaymentRequired, "pay",
                                                                  {"PAYMENT-REQUIRED": "e30="})
