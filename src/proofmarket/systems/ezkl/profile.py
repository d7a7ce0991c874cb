"""Privacy profiles: what a proof reveals about the input and the weights.

input   public  -> the input's quantised values are public instances of the proof
        hashed  -> only a Poseidon hash of (input, random salt) is public
params  fixed   -> weights are baked into the proving/verifying keys (the vk is the model's identity)
        hashed  -> a Poseidon commitment of the weights is public
output  public  -> the consumer reads the output from the proof (every model a consumer calls)

A slice of a sliced model (systems/ezkl/sliced.py) has a ``committed`` output, and the next slice a ``committed``
input: the tensor between them is a KZG commitment at the start of each proof (EZKL's ``polycommit``), the same
commitment on both sides, never revealed.
"""

from __future__ import annotations

from dataclasses import dataclass

from proofmarket.core.errors import UsageError
from proofmarket.core.salt import SALT_BITS as CORE_SALT_BITS
from proofmarket.core.salt import SALT_ELEMENTS as CORE_SALT_ELEMENTS

INPUT_VISIBILITIES = ("public", "hashed")
PARAM_VISIBILITIES = ("fixed", "hashed")

NAMED_PROFILES = {
    "public": ("public", "fixed"),
    "private-input": ("hashed", "fixed"),
    "private": ("hashed", "hashed"),
}

COMMITTED = "committed"  # a slice's link: a KZG commitment in the proof (EZKL's polycommit visibility)


def ezkl_visibility(visibility: str) -> str:
    """EZKL's name of a visibility: ``committed`` is EZKL's ``polycommit``; the others are EZKL's own."""
    return "polycommit" if visibility == COMMITTED else visibility


#: salt appended to a hashed input (core/salt.py says why these sizes)
SALT_ELEMENTS, SALT_BITS = CORE_SALT_ELEMENTS, CORE_SALT_BITS


@dataclass(frozen=True)
class PrivacyProfile:
    input: str = "public"
    params: str = "fixed"
    output: str = "public"

    @property
    def name(self) -> str:
        for name, pair in NAMED_PROFILES.items():
            if pair == (self.input, self.params):
                return name
        return f"input={self.input},params={self.params}"

    @property
    def salted(self) -> bool:
        return self.input == "hashed"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "input": self.input, "params": self.params, "output": self.output}

    @classmethod
    def parse(cls, text: str) -> PrivacyProfile:
        """Accept a named profile (public, private-input, private) or 'input=hashed,params=fixed'."""
        text = text.strip()
        if text in NAMED_PROFILES:
            inp, params = NAMED_PROFILES[text]
            return cls(inp, params)
        fields = {"input": "public", "params": "fixed"}
        for part in filter(None, text.split(",")):
            key, _, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if key not in fields:
                raise UsageError(f"unknown privacy field '{key}': use input=... and params=...")
            fields[key] = value
        return cls.from_fields(fields["input"], fields["params"])

    @classmethod
    def from_fields(cls, inp: str, params: str) -> PrivacyProfile:
        if inp not in INPUT_VISIBILITIES:
            raise UsageError(f"input visibility '{inp}' is not one of {', '.join(INPUT_VISIBILITIES)}")
        if params not in PARAM_VISIBILITIES:
            raise UsageError(f"params visibility '{params}' is not one of {', '.join(PARAM_VISIBILITIES)}")
        return cls(inp, params)
