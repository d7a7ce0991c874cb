"""Attested mode: models too large to prove, sold with a signed, re-executable attestation."""
