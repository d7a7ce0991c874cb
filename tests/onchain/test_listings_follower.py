"""The registry follower takes the chain off the paid path: with it, ``Listings.sellable`` reads the cache (a
model's first call reads its entry once); the follower drops what the registry's events name and reads it again.
Without it (a CLI), each read looks at the events itself."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from proofmarket.core.errors import ModelInactive
from proofmarket.onchain import listings as listings_module
from proofmarket.onchain.listings import FRESH_S, Listing, Listings


def _market() -> Any:
    account = SimpleNamespace(address="0x" + "11" * 20)
    return SimpleNamespace(accounts=SimpleNamespace(owner=account, prover=account),
                           client=SimpleNamespace(block_number=lambda: 100))


def listings(monkeypatch: pytest.MonkeyPatch, entries: dict[str, Listing]) -> tuple[Listings, dict[str, int]]:
    account = SimpleNamespace(address="0x" + "11" * 20)
    market = SimpleNamespace(accounts=SimpleNamespace(owner=account, prover=account),
                             client=SimpleNamespace(block_number=lambda: 100))
    made = Listings(market, poll_s=3600)  # type: ignore[arg-type]
    counts = {"read": 0, "refresh": 0}

    def read(model_id: str, owner: str) -> Listing:
        counts["read"] += 1
        return entries[model_id]

    def refresh(*, force: bool = False) -> None:
        counts["refresh"] += 1

    monkeypatch.setattr(made, "_read", read)
    monkeypatch.setattr(made, "_refresh", refresh)
    return made, counts


def entry(model_id: str, *, price: int = 5, active: bool = True) -> Listing:
    return Listing(model_id, "0x01", "0x" + "11" * 20, True, 31337, "0xr", "0xm", price_atomic=price, active=active)


def test_with_the_follower_the_paid_path_reads_the_cache_only(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = {"m": entry("m")}
    made, counts = listings(monkeypatch, entries)
    made.start_following()
    try:
        for _ in range(20):
            assert made.sellable("m") is not None
        assert counts == {"read": 1, "refresh": 0}  # one read at the model's first call, then the cache

        entries["m"] = entry("m", active=False)  # deactivated on chain: the follower's next pass...
        made._cache.clear()  # ...drops what the registry's event named (its _refresh)
        assert made.follow_once() == 1  # and reads it again
        with pytest.raises(ModelInactive):
            made.sellable("m")
        assert counts["read"] == 2

        stale: Any = made._cache[("m", entries["m"].owner)]
        made._cache[("m", entries["m"].owner)] = (stale[0], stale[1] - FRESH_S - 1)
        entries["m"] = entry("m", price=9)
        assert made.follow_once() == 1  # an entry no event named is read again once FRESH_S old
        assert made.get("m").price_atomic == 9
    finally:
        made.close()


def test_without_the_follower_each_paid_read_looks_at_the_events(monkeypatch: pytest.MonkeyPatch) -> None:
    made, counts = listings(monkeypatch, {"m": entry("m")})
    for _ in range(3):
        made.sellable("m")
    assert counts == {"read": 1, "refresh": 3}


def test_validation_records_are_a_sample_of_a_listings_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each validation record re-verifies a proof on chain at the prover's cost: the first call of a listing is
    recorded, then at most one every ``validation_every_s``; a failed record does not count as one."""
    from proofmarket.onchain import validations

    made = Listings(_market(), poll_s=3600, validation_every_s=60.0)  # type: ignore[arg-type]
    sent: list[str] = []
    failing = {"bafy-broken"}

    def record(market: object, onchain_id: bytes, proof: bytes, instances: list[int], cid: str, receipt: str) -> None:
        if cid in failing:
            raise RuntimeError("no agent")
        sent.append(cid)

    monkeypatch.setattr(validations, "record_proof", record)
    clock = [1000.0]
    monkeypatch.setattr(listings_module.time, "monotonic", lambda: clock[0])
    item = lambda cid, listing="0xaa": ("validate", listing, b"p", [1], cid, "tx")  # noqa: E731
    made._validate(item("bafy-broken"))  # failed: not a record
    made._validate(item("bafy-1"))
    made._validate(item("bafy-2"))  # 0 s later: skipped
    made._validate(item("bafy-other", "0xbb"))  # another listing: its own first record
    clock[0] += 61
    made._validate(item("bafy-3"))
    assert sent == ["bafy-1", "bafy-other", "bafy-3"]
    every = Listings(_market(), poll_s=3600, validation_every_s=0)  # type: ignore[arg-type]
    sent.clear()
    every._validate(item("bafy-a"))
    every._validate(item("bafy-b"))
    assert sent == ["bafy-a", "bafy-b"]
