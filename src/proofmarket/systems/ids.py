"""The ids of the built-in proof systems (what manifests and bundles name in their ``system`` field)."""

PROVEN_SYSTEM = "ezkl-halo2-kzg-bn254"
ATTESTED_SYSTEM = "proofmarket-attested-toploc-v1"
SLICED_SYSTEM = "ezkl-halo2-kzg-bn254-sliced"  # one model as linked EZKL slices (systems/ezkl/sliced.py)
DEFAULT_SYSTEM = PROVEN_SYSTEM  # v1 documents (before systems were named) are EZKL ones
