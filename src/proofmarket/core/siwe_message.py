"""EIP-4361 (Sign-In with Ethereum) messages: written and parsed here, strictly, with no dependency that pins web3.

The message, line by line (optional parts in brackets)::

    {domain} wants you to sign in with your Ethereum account:
    {address}

    [{statement}
    ]
    URI: {uri}
    Version: 1
    Chain ID: {chain id}
    Nonce: {nonce, at least 8 alphanumerics}
    Issued At: {RFC 3339 time}
    [Expiration Time: {RFC 3339 time}]
    [Not Before: {RFC 3339 time}]
    [Request ID: {id}]
    [Resources:
    - {URI}
    ...]

``parse`` refuses anything else with ``ValueError`` naming the line; what the node checks (its domain, its
resource, the times, the signature) is ``api/siwe.py``'s.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eth_utils.address import is_checksum_address

_HEADER = " wants you to sign in with your Ethereum account:"
_DOMAIN = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*://)?[A-Za-z0-9.\-_~%!$&'()*+,;=:@\[\]]+$")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,}$")
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:\S+$")
_FIELDS = (("uri", "URI"), ("version", "Version"), ("chain_id", "Chain ID"), ("nonce", "Nonce"),
           ("issued_at", "Issued At"), ("expiration_time", "Expiration Time"), ("not_before", "Not Before"),
           ("request_id", "Request ID"))
_REQUIRED = ("uri", "version", "chain_id", "nonce", "issued_at")


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    statement: str | None = None
    version: str = "1"
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str | None = None
    resources: list[str] = field(default_factory=list)

    def prepare_message(self) -> str:
        lines = [f"{self.domain}{_HEADER}", self.address, ""]
        if self.statement:
            lines.append(self.statement)
        lines += ["", f"URI: {self.uri}", f"Version: {self.version}", f"Chain ID: {self.chain_id}",
                  f"Nonce: {self.nonce}", f"Issued At: {_rfc3339(self.issued_at)}"]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {_rfc3339(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_rfc3339(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines += ["Resources:", *(f"- {r}" for r in self.resources)]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.prepare_message()

    @classmethod
    def parse(cls, text: str) -> SiweMessage:
        """The message ``text`` is, or ``ValueError`` naming what is wrong."""
        lines = text.split("\n")
        if len(lines) < 9 or not lines[0].endswith(_HEADER):
            raise ValueError("the first line must be '<domain> wants you to sign in with your Ethereum account:'")
        domain = lines[0][:-len(_HEADER)]
        if not _DOMAIN.match(domain):
            raise ValueError(f"{domain!r} is not a domain")
        address = lines[1]
        if not is_checksum_address(address):
            raise ValueError("the second line must be an EIP-55 checksummed address")
        if lines[2] != "":
            raise ValueError("an empty line must follow the address")
        at, statement = 3, None
        if lines[3] == "":
            at = 4  # no statement: EIP-4361's two empty lines
        elif not lines[3].startswith("URI: "):  # (one empty line and no statement: as viem writes it)
            statement, at = lines[3], 5
            if lines[4] != "":
                raise ValueError("line 4 must be 'URI: ...', or a one-line statement followed by an empty line")
        values: dict[str, str] = {}
        for name, label in _FIELDS:
            if at < len(lines) and lines[at].startswith(f"{label}: "):
                values[name] = lines[at][len(label) + 2:]
                at += 1
            elif name in _REQUIRED:
                raise ValueError(f"line {at + 1} must be '{label}: ...'")
        resources: list[str] = []
        if at < len(lines) and lines[at] == "Resources:":
            at += 1
            while at < len(lines) and lines[at].startswith("- "):
                resources.append(lines[at][2:])
                at += 1
        if at != len(lines):
            raise ValueError(f"line {at + 1} is not part of an EIP-4361 message")
        if values["version"] != "1":
            raise ValueError("the version must be 1")
        if not _URI.match(values["uri"]) or any(not _URI.match(r) for r in resources):
            raise ValueError("the URI and each resource must be an absolute URI")
        if not _NONCE.match(values["nonce"]):
            raise ValueError("the nonce must be at least 8 letters or digits")
        if not values["chain_id"].isdigit():
            raise ValueError("the chain id must be a number")
        return cls(domain=domain, address=address, statement=statement, uri=values["uri"], version="1",
                   chain_id=int(values["chain_id"]), nonce=values["nonce"], issued_at=_time(values["issued_at"]),
                   expiration_time=_optional_time(values.get("expiration_time")),
                   not_before=_optional_time(values.get("not_before")), request_id=values.get("request_id"),
                   resources=resources)


def generate_nonce(length: int = 17) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return parsed


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else _time(text)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
