"""EIP-712 struct types written as one line each: ``fields("from address, value uint256")`` is the list of
``{"name", "type"}`` members that eth-account's typed-data encoder and wallets' ``eth_signTypedData_v4`` take."""

from __future__ import annotations


def fields(spec: str) -> list[dict[str, str]]:
    """``"name type, name type, ..."`` -> ``[{"name": name, "type": type}, ...]`` in that order."""
    members = []
    for member in spec.split(","):
        name, kind = member.split()
        members.append({"name": name, "type": kind})
    return members


DOMAIN_FIELDS = fields("name string, version string, chainId uint256")  # a domain without a verifying contract
