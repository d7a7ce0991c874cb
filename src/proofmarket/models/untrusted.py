"""An upload from anyone, checked in the sandbox (``core/sandbox``): the ONNX model first, then its samples.

The node's process only streams the files to disk and reads back what the checks found: a :class:`ModelInfo`
(a few hundred bytes), and the sample document written as JSON beside the upload (the node stores it by its
content address without parsing it). Each check runs in a child of its own, so a cap it hits names the file
that hit it: ``model_over_budget`` for the model, ``samples_too_large`` for the samples.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from proofmarket.core import sandbox
from proofmarket.core.errors import InvalidModel, ModelOverBudget, ProofMarketError, SamplesTooLarge
from proofmarket.models.external import self_contained
from proofmarket.models.loader import load_model
from proofmarket.models.sample_files import read_sample_file
from proofmarket.models.sample_sets import parse_samples
from proofmarket.models.spec import ModelInfo


@dataclass(frozen=True)
class CheckedUpload:
    info: ModelInfo
    samples_path: Path  # the sample document, JSON
    samples: int  # how many samples it holds


def check_upload(onnx_path: Path, samples_path: Path, samples_name: str, out_path: Path, *, max_model_bytes: int,
                 limits: sandbox.Limits) -> CheckedUpload:
    """Check the model, then the samples against it, each in a capped child; raise the error that refuses one."""
    info: ModelInfo = sandbox.run(_model, str(onnx_path), max_model_bytes, limits=limits,
                                  over_limit=_model_over_limit)
    count: int = sandbox.run(_samples, str(samples_path), samples_name, info, str(out_path), limits=limits,
                             over_limit=_samples_over_limit)
    return CheckedUpload(info, out_path, count)


def _model(path: str, max_bytes: int) -> ModelInfo:
    try:
        # weights in files beside it (uploaded with it): read here, in the sandbox, only from the upload's own folder,
        # and the model file replaced by its self-contained copy (what the node stores)
        embedded = self_contained(Path(path), Path(path).parent / "self-contained", max_bytes)
        if embedded != Path(path):
            os.replace(embedded, path)
        return load_model(path, max_bytes=max_bytes)
    except ProofMarketError:
        raise
    except RecursionError as exc:  # a graph nested past the parser's depth
        raise InvalidModel("The model nests graphs or functions too deeply to be checked.") from exc


def _samples(path: str, name: str, info: ModelInfo, out: str) -> int:
    doc = read_sample_file(Path(path).read_bytes(), name, info)
    count = len(parse_samples(doc, info))
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    return count


def _model_over_limit(hit: sandbox.LimitHit) -> ProofMarketError:
    return ModelOverBudget(f"checking the model took {hit.describe()} of this node's upload check: it is refused",
                           limit=hit.limit, memory_mb=hit.limits.memory_mb, cpu_s=hit.limits.cpu_s,
                           wall_s=hit.limits.wall_s)


def _samples_over_limit(hit: sandbox.LimitHit) -> ProofMarketError:
    return SamplesTooLarge(f"reading the samples took {hit.describe()} of this node's upload check: send fewer or "
                           "smaller samples", limit=hit.limit, memory_mb=hit.limits.memory_mb,
                           cpu_s=hit.limits.cpu_s, wall_s=hit.limits.wall_s)
