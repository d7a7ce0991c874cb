"""The SDK's transport errors: one error class, and the Idempotency-Key to retry a call without paying twice."""

from __future__ import annotations

import httpx
import pytest

from proofmarket import Client
from proofmarket.core.errors import NodeUnavailable


def _client(handler: httpx.MockTransport) -> Client:
    return Client("http://node.test", transport=handler)


def test_a_timed_out_call_names_its_idempotency_key_and_a_retry_sends_it_again() -> None:
    seen: list[str] = []

    def timeout(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Idempotency-Key"])
        raise httpx.ReadTimeout("slow", request=request)

    with _client(httpx.MockTransport(timeout)) as sdk, pytest.raises(NodeUnavailable) as err:
        sdk.infer("m", {"input_data": [[1.0]]})
    key = err.value.details["idempotency_key"]
    assert seen == [key] and err.value.code == "node_unavailable" and err.value.exit_code == 4
    assert "same Idempotency-Key" in err.value.message

    with _client(httpx.MockTransport(timeout)) as sdk, pytest.raises(NodeUnavailable):
        sdk.infer("m", {"input_data": [[1.0]]}, idempotency_key=key)
    assert seen == [key, key]


def test_every_call_gets_its_own_key_and_a_refused_connection_is_node_unavailable() -> None:
    keys: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("Idempotency-Key", ""))
        raise httpx.ConnectError("refused", request=request)

    with _client(httpx.MockTransport(refuse)) as sdk:
        for _ in range(2):
            with pytest.raises(NodeUnavailable, match="cannot reach the node at http://node.test"):
                sdk.infer("m", {"input_data": [[1.0]]})
        with pytest.raises(NodeUnavailable):
            sdk.models()
    assert len(keys) == 3 and keys[0] != keys[1] and all(len(k) == 32 for k in keys[:2]) and keys[2] == ""
