"""A model's input domain: the inputs it answers, per element of each input, as the owner states them or as its
samples reach them widened by a margin (``DEFAULT_MARGIN``).

    stated     ``--domain LOW:HIGH`` (every element) or a JSON file {"<input>": {"low": x | [...], "high": ...}}
    derived    the samples' range of each element, widened by ``margin`` x that range on each side (an element the
               samples never vary by ``margin`` x max(1, |value|)); samples that cannot calibrate (identical rows,
               nearly constant elements, fewer distinct rows than elements) are named (``sample_warnings``)
Compile calibrates the circuit on points that cover the domain (``points``: its two extreme corners, its centre,
random corners and random points inside, beside the samples) and keeps only settings whose witness holds on them;
the manifest records the domain, and every call's input is checked against it before any payment
(``check``: ``input_out_of_range`` names the input, the element, its value and the range).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofmarket.core.errors import InputOutOfRange, ProofMarketError, UsageError

if TYPE_CHECKING:  # numpy loads where compile uses it, never for a call's check (``prove``'s plain path has none)
    from collections.abc import Callable

    import numpy as np

DEFAULT_MARGIN = 0.5  # the samples' range widened by half of itself on each side (four random samples of a uniform
# feature cover about 60 % of its range: half again on each side covers nearly all of it)
CORNERS, INSIDE = 4, 2  # random corners and inner points compile calibrates on, beside the three fixed ones (each
# is a witness per candidate: 12 and 8 answered the same fuzz, bench/domain.md, at twice the compile time)


@dataclass(frozen=True)
class InputDomain:
    names: tuple[str, ...]
    low: tuple[tuple[float, ...], ...]  # per input, per element (row-major)
    high: tuple[tuple[float, ...], ...]
    source: str  # "stated" | "samples"
    margin: float | None = None  # the margin a derived domain widened the samples by

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "margin": self.margin, "inputs": [
            {"name": name, "low": _compact(low), "high": _compact(high)}
            for name, low, high in zip(self.names, self.low, self.high, strict=True)]}

    @classmethod
    def from_json(cls, doc: dict[str, Any], sizes: list[int]) -> InputDomain:
        entries = doc["inputs"]
        return cls(tuple(str(e["name"]) for e in entries),
                   tuple(_expand(e["low"], n) for e, n in zip(entries, sizes, strict=True)),
                   tuple(_expand(e["high"], n) for e, n in zip(entries, sizes, strict=True)),
                   str(doc.get("source", "stated")), doc.get("margin"))

    def summary(self) -> str:
        parts = []
        for name, low, high in zip(self.names, self.low, self.high, strict=True):
            parts.append(f"{name} in [{min(low):.4g}, {max(high):.4g}]" if len(set(low)) > 1 or len(set(high)) > 1
                         else f"{name} in [{low[0]:.4g}, {high[0]:.4g}]")
        how = "stated by the owner" if self.source == "stated" else f"the samples' range widened by {self.margin:g}x"
        return f"input domain ({how}): " + ", ".join(parts)

    def check(self, flat: list[list[float]]) -> None:
        """Each value inside its element's range; ``InputOutOfRange`` names the first one outside."""
        for name, values, low, high in zip(self.names, flat, self.low, self.high, strict=True):
            outside = [i for i, (v, lo, hi) in enumerate(zip(values, low, high, strict=True)) if not lo <= v <= hi]
            if outside:
                i = outside[0]
                v, lo, hi = float(values[i]), low[i], high[i]
                raise InputOutOfRange(
                    f"input '{name}' element {i} is {v:.6g}, outside the model's input domain [{lo:.6g}, "
                    f"{hi:.6g}] (what its circuit is calibrated for): send a value inside it; nothing is charged",
                    input=name, index=i, value=v, low=lo, high=hi, outside=len(outside))

    def points(self, seed: int = 0, integral: tuple[bool, ...] = ()) -> list[list[list[float]]]:
        """Points that cover the domain, each as flat values per input: its lowest and highest corners, its centre,
        ``CORNERS`` random corners and ``INSIDE`` random points inside (the same ones for the same domain). An input
        flagged in ``integral`` (an integer type: token ids) takes integers only, inside its range."""
        import numpy as np

        rng = np.random.default_rng(seed)
        whole = [k < len(integral) and integral[k] for k in range(len(self.names))]
        lows = [np.ceil(lo) if w else np.asarray(lo) for lo, w in zip(map(np.asarray, self.low), whole, strict=True)]
        highs = [np.floor(hi) if w else np.asarray(hi) for hi, w in zip(map(np.asarray, self.high), whole,
                                                                         strict=True)]

        def at(k: int, values: Any) -> list[float]:
            kept = np.clip(np.round(values), lows[k], highs[k]) if whole[k] else values
            return list(kept.tolist())

        n = range(len(lows))
        out = [[lows[k].tolist() for k in n], [highs[k].tolist() for k in n],
               [at(k, (lows[k] + highs[k]) / 2) for k in n]]
        for _ in range(CORNERS):
            out.append([np.where(rng.random(lows[k].size) < 0.5, lows[k], highs[k]).tolist() for k in n])
        for _ in range(INSIDE):
            out.append([at(k, lows[k] + rng.random(lows[k].size) * (highs[k] - lows[k])) for k in n])
        return out


def from_samples(names: list[str], samples: list[list[np.ndarray]], margin: float = DEFAULT_MARGIN,
                 limits: dict[str, tuple[int, int]] | None = None,
                 unvaried_width: float | None = None) -> InputDomain:
    """The samples' range of each element, widened by ``margin`` x that range on each side (an element the samples
    never vary: by ``margin`` x ``unvaried_width``, None: x max(1, |value|), a caller's constant may vary with its
    size); an input with ``limits`` (the rows of the table it indexes:
    ``graph.index_limits``) takes all of them at every element, whatever the samples (any token at any place)."""
    import numpy as np

    lows, highs = [], []
    for k, name in enumerate(names):
        stacked = np.stack([np.asarray(s[k], dtype=np.float64).ravel() for s in samples])
        lo, hi = stacked.min(axis=0), stacked.max(axis=0)
        unvaried = np.maximum(1.0, np.abs(lo)) if unvaried_width is None else np.full(lo.shape, unvaried_width)
        width = np.where(hi > lo, hi - lo, unvaried)
        lo, hi = lo - margin * width, hi + margin * width
        if limits and name in limits:
            lo, hi = np.full(lo.shape, float(limits[name][0])), np.full(hi.shape, float(limits[name][1]))
        lows.append(tuple(float(v) for v in lo))
        highs.append(tuple(float(v) for v in hi))
    return InputDomain(tuple(names), tuple(lows), tuple(highs), "samples", margin)


def check_limits(domain: InputDomain, limits: dict[str, tuple[int, int]]) -> None:
    """A stated domain must keep each indexing input inside its table's rows (``UsageError`` naming it)."""
    for name, low, high in zip(domain.names, domain.low, domain.high, strict=True):
        if name in limits and (min(low) < limits[name][0] or max(high) > limits[name][1]):
            raise UsageError(f"--domain: input '{name}' indexes a table of {limits[name][1] + 1} rows: its values "
                             f"lie in [{limits[name][0]}, {limits[name][1]}]")


def stated(spec: str, names: list[str], sizes: list[int]) -> InputDomain:
    """The owner's domain: ``LOW:HIGH`` for every element of every input, or a JSON file (or JSON text)
    {"<input>": {"low": x | [...], "high": x | [...]}} naming each input."""
    text = spec.strip()
    if not text.startswith("{") and ":" in text and not Path(text).exists():
        low_text, _, high_text = text.partition(":")
        try:
            low, high = float(low_text), float(high_text)
        except ValueError:
            raise UsageError(f"--domain {spec!r}: give LOW:HIGH (two numbers) or a JSON file") from None
        return _checked(names, [(low,) * n for n in sizes], [(high,) * n for n in sizes])
    try:
        doc = json.loads(text if text.startswith("{") else Path(text).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--domain {spec!r}: neither LOW:HIGH nor a readable JSON file ({exc})") from None
    missing = [n for n in names if n not in doc]
    if not isinstance(doc, dict) or missing:
        raise UsageError(f"--domain names every input of the model: missing {', '.join(missing) or 'all'}")
    try:
        lows = [_expand(doc[n]["low"], size) for n, size in zip(names, sizes, strict=True)]
        highs = [_expand(doc[n]["high"], size) for n, size in zip(names, sizes, strict=True)]
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"--domain: each input takes {{\"low\": x or [...], \"high\": x or [...]}} ({exc})") from None
    return _checked(names, lows, highs)


def sample_warnings(samples: list[list[np.ndarray]]) -> list[str]:
    """What makes samples a poor calibration, in words: identical rows, elements they never vary, fewer distinct
    rows than elements."""
    import numpy as np

    rows = [np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in s]) for s in samples]
    said = []
    distinct = {r.tobytes() for r in rows}
    if len(distinct) < len(rows):
        said.append(f"{len(rows) - len(distinct)} of the {len(rows)} samples repeat another: they add nothing")
    stacked = np.stack(rows)
    constant = int(np.sum(np.ptp(stacked, axis=0) <= 1e-9 * np.maximum(1.0, np.abs(stacked).max(axis=0))))
    if len(rows) > 1 and constant:
        said.append(f"{constant} of the {stacked.shape[1]} input elements never vary across the samples")
    if len(distinct) < stacked.shape[1]:
        said.append(f"{len(distinct)} distinct samples for {stacked.shape[1]} input elements: the circuit is "
                    "calibrated on the domain's points too, but give samples that vary every element")
    return said


def _checked(names: list[str], lows: list[tuple[float, ...]], highs: list[tuple[float, ...]]) -> InputDomain:
    for name, low, high in zip(names, lows, highs, strict=True):
        if not all(map(math.isfinite, (*low, *high))) or any(a > b for a, b in zip(low, high, strict=True)):
            raise UsageError(f"--domain: input '{name}' needs finite bounds with low <= high")
    return InputDomain(tuple(names), tuple(lows), tuple(highs), "stated")


def _compact(values: tuple[float, ...]) -> float | list[float]:
    return values[0] if len(set(values)) == 1 else list(values)


def _expand(value: Any, size: int) -> tuple[float, ...]:
    if isinstance(value, list | tuple):
        if len(value) != size:
            raise ValueError(f"{len(value)} bounds for {size} elements")
        return tuple(float(v) for v in value)
    return (float(value),) * size


def integral(inputs: Any) -> tuple[bool, ...]:
    """Which of a model's inputs (``TensorSpec``s) are of an integer type: token ids, whose points are whole."""
    import numpy as np

    return tuple(bool(np.issubdtype(np.dtype(t.dtype), np.integer)) for t in inputs)


def index_limits(path: Path) -> dict[str, tuple[int, int]]:
    """``graph.index_limits`` of the ONNX file at ``path`` (its tables' shapes: no weights loaded)."""
    import onnx

    from proofmarket.models.graph import index_limits as limits_of

    return limits_of(onnx.load(str(path), load_external_data=False))


def point_arrays(domain: InputDomain, inputs: Any) -> list[list[Any]]:
    """The domain's covering points (``InputDomain.points``) as arrays in the inputs' (``TensorSpec``s) shapes."""
    import numpy as np

    return [[np.asarray(v, dtype=np.float32).reshape(t.shape) for v, t in zip(point, inputs, strict=True)]
            for point in domain.points(integral=integral(inputs))]


def input_domain(info: Any, samples: list[list[np.ndarray]], spec: str | None, margin: float,
                 progress: Callable[[str], None], unvaried_width: float | None = None) -> InputDomain:
    """The model's input domain: the owner's (``spec``; every sample must lie in it), else the samples' widened by
    ``margin`` (``from_samples``); what makes the samples a poor calibration is said first. ``info``: the model's
    ``ModelInfo``."""
    import numpy as np

    for warning in sample_warnings(samples):
        progress(f"warning: {warning}")
    names, sizes = [t.name for t in info.inputs], [t.size for t in info.inputs]
    limits = index_limits(info.path)  # an input indexing a table (token ids): inside its rows
    domain = stated(spec, names, sizes) if spec else from_samples(names, samples, margin, limits, unvaried_width)
    if spec:
        check_limits(domain, limits)
    for i, sample in enumerate(samples):
        try:
            domain.check([np.asarray(a, dtype=np.float64).ravel().tolist() for a in sample])
        except ProofMarketError as exc:
            raise UsageError(f"sample {i} lies outside the stated input domain: {exc.message}") from None
    progress(domain.summary())
    return domain
