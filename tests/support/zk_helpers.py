"""Helpers shared by the zk tests (a module, not conftest, so test files can import it)."""

from __future__ import annotations

import json

from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.compiler import CompileOptions, CompileResult
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.prover import EzklProver
from proofmarket.systems.ezkl.srs import SrsProvider
from proofmarket.systems.ezkl.tuning import Candidate

# A small grid keeps the suite fast; the full default grid runs in make bench and make demo.
SMALL_GRID = [(256, 3, 7, 4), (64, 4, 7, 4), (256, 2, 10, 4)]


def small_grid() -> list[Candidate]:
    return [Candidate(b, legs, s, c) for b, legs, s, c in SMALL_GRID]


def compile_sample(prover: EzklProver, srs: SrsProvider, name: str, profile: str = "public",
                   candidates: list[Candidate] | None = None, batch_sizes: tuple[int, ...] = (),
                   domain_margin: float | None = None) -> CompileResult:
    samples = json.loads(sample_path(name, "samples").read_text())
    options = CompileOptions(profile=PrivacyProfile.parse(profile), srs=srs,
                             candidates=candidates if candidates is not None else small_grid(),
                             batch_sizes=batch_sizes, task="classification",  # the samples are classifiers
                             **({"domain_margin": domain_margin} if domain_margin is not None else {}))
    return prover.compile(sample_path(name), samples, options)
