"""Split a model's graph into slices at tensor boundaries: each slice a model of its own whose inputs are the
previous slice's outputs, so proving every slice proves the model (``systems/ezkl/sliced.py`` links them).

    cuts       the places in the graph's node order where at most ``MAX_WIDTH`` computed tensors cross: everything
               before is done and only those tensors are read after (a residual stream and the branch beside it
               cross together). Initializers and ``Constant`` nodes cross freely: each slice holds its own copy; a
               tensor crossing several cuts (the residual) is passed through the slices between (``Identity``).
    costs      what a slice costs (``Costs``): the summed cost of its segments (the nodes between two adjacent
               cuts), or a link's commitment column where that is taller: EZKL commits each crossing tensor in a
               column of its own (``polycommit``), beside the model's rows. The prover measures each
               segment's rows with EZKL (``systems/ezkl/slice_costs.py``); without a measurement a segment costs its
               nodes' work (multiply-adds for MatMul/Gemm/Conv, output elements for the rest)
    plan       ``n`` slices whose largest cost is the smallest possible (a minimax partition over the cuts), or the
               fewest slices each under a cost (``fewest``); a recorded plan is cut again at its places (``plan_at``)
    extract    slice ``k``'s model: the nodes between its cuts, its inputs the tensors of its first cut (the model's
               inputs for slice 0), its outputs those of its last (the model's outputs for the last slice), in the
               cut's order: slice k's outputs and slice k+1's inputs are the same tensors, position by position
    read_at    a slice reading inputs that arrive at different scales at one (each finer one multiplied back by a
               power of two inside the slice)

The graph's node list must be in topological order (ONNX requires it); a model output made before the last slice
crosses every later cut (a link) and the last slice hands it out as it came. A slice's model keeps the opset and
every initializer it reads, nothing else.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from proofmarket.core.errors import UsageError

MAX_SLICES = 64
MAX_WIDTH = 4  # the most tensors a cut may be crossed by (each is one link: one commitment on each side)


@dataclass(frozen=True)
class Cut:
    """A place to split: after node ``index - 1``, only ``tensors`` (of ``shapes``) are read by the nodes after."""

    index: int
    tensors: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    work_before: int  # the summed work of the nodes before it

    @property
    def elements(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def widest(self) -> int:
        """The values of its largest tensor: the rows of the column each side commits it in (one per tensor)."""
        return max((math.prod(s) for s in self.shapes), default=0)


@dataclass(frozen=True)
class SlicePlan:
    cuts: tuple[Cut, ...]
    total_work: int
    node_count: int
    costs: tuple[float, ...] = ()  # each slice's cost as the planner counted it (none: cut again at recorded places)

    @property
    def count(self) -> int:
        return len(self.cuts) + 1

    def works(self) -> list[int]:
        edges = [0, *(c.work_before for c in self.cuts), self.total_work]
        return [b - a for a, b in zip(edges, edges[1:], strict=False)]

    def to_json(self) -> dict[str, object]:
        return {"slices": self.count, "cuts": [{"after_node": c.index, "tensors": list(c.tensors),
                                                "shapes": [list(x) for x in c.shapes]} for c in self.cuts],
                "work": self.works(), **({"cost": [round(c) for c in self.costs]} if self.costs else {})}


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = shape_inference.infer_shapes(model)
    out: dict[str, tuple[int, ...]] = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            out[value.name] = tuple(int(d.dim_value) for d in dims)
    return out


def _free(model: onnx.ModelProto) -> set[str]:
    """Tensors any slice may hold a copy of: initializers and the outputs of ``Constant`` nodes."""
    free = {t.name for t in model.graph.initializer}
    free.update(o for n in model.graph.node if n.op_type == "Constant" for o in n.output)
    return free


def _work(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    out = shapes.get(node.output[0]) if node.output else None
    elements = math.prod(out) if out else 1
    if node.op_type in ("MatMul", "Gemm") and len(node.input) >= 2:
        left = shapes.get(node.input[0])
        inner = left[-1] if left else 1
        if node.op_type == "Gemm" and left and any(a.name == "transA" and a.i for a in node.attribute):
            inner = left[0]
        return elements * max(1, inner)
    if node.op_type in ("Conv", "ConvTranspose") and len(node.input) >= 2:
        kernel = shapes.get(node.input[1])
        return elements * (math.prod(kernel[1:]) if kernel else 1)
    if node.op_type == "Constant":
        return 0
    return elements


def cuts(model: onnx.ModelProto, width: int = MAX_WIDTH) -> tuple[list[Cut], int]:
    """Every cut of the graph crossed by at most ``width`` computed tensors, and the graph's total work."""
    graph = model.graph
    shapes, free = _shapes(model), _free(model)
    inputs = [i.name for i in graph.input if i.name not in free]
    order = {name: n for n, name in enumerate(inputs)}  # where each tensor is made: its place in the cut
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            if name and name not in free:
                last_use[name] = i
        for name in node.output:
            order.setdefault(name, len(order))
    outputs = {o.name for o in graph.output}  # read after the last node: each crosses every cut after it is made
    found: list[Cut] = []
    work, live, made = 0, set(inputs), set(inputs)
    for i, node in enumerate(graph.node):
        work += _work(node, shapes)
        live.update(o for o in node.output if o and o not in free)
        made.update(node.output)
        live = {t for t in live if last_use.get(t, -1) > i or t in outputs}
        crossing = tuple(sorted(live, key=order.__getitem__))
        if i + 1 >= len(graph.node) or not 1 <= len(crossing) <= width or outputs <= made:
            continue  # the end, too many tensors, or every output made (nothing left to prove after it)
        if set(crossing) <= set(inputs) or not all(t in shapes for t in crossing):
            continue  # nothing computed yet, or a tensor of unknown shape
        if found and found[-1].tensors == crossing:
            continue  # a Constant node between: the same cut
        found.append(Cut(i + 1, crossing, tuple(shapes[t] for t in crossing), work))
    return found, work


@dataclass(frozen=True)
class Costs:
    """What the planner balances: the cuts it may use, each segment's cost (the nodes between two adjacent cuts, in
    order: one more than the cuts) and each cut's link cost (the rows of its widest tensor's commitment column, on
    each side)."""

    cuts: tuple[Cut, ...]
    segments: tuple[float, ...]
    links: tuple[float, ...]
    total_work: int

    @cached_property
    def _prefix(self) -> list[float]:  # the segments' cost before each boundary
        return [0.0, *itertools.accumulate(self.segments)]

    @cached_property
    def _columns(self) -> list[float]:  # each boundary's link cost (none at the model's own input and output)
        return [0.0, *self.links, 0.0]

    def slice_cost(self, i: int, j: int) -> float:
        """The slice from boundary ``i`` to boundary ``j`` (boundary ``b`` > 0 is cut ``b - 1``): its segments'
        summed cost, or a link's commitment column where that is taller (each tensor has a column of its own)."""
        return max(self._prefix[j] - self._prefix[i], self._columns[i], self._columns[j])


def work_costs(model: onnx.ModelProto, width: int = MAX_WIDTH) -> Costs:
    """Costs from the graph alone: each segment its nodes' work, each link its widest tensor's values."""
    found, total = cuts(model, width)
    edges = [0, *(c.work_before for c in found), total]
    return Costs(tuple(found), tuple(float(b - a) for a, b in zip(edges, edges[1:], strict=False)),
                 tuple(float(c.widest) for c in found), total)


def _partition(costs: Costs, most: int) -> tuple[list[list[float]], list[list[int]]]:
    """best[k][j]: the least largest cost of ``k`` slices covering the nodes before boundary ``j``, and back[k][j]:
    the boundary its last slice starts at (a minimax partition, by dynamic programming)."""
    boundaries = len(costs.cuts) + 2
    inf = float("inf")
    best = [[inf] * boundaries for _ in range(most + 1)]
    back = [[0] * boundaries for _ in range(most + 1)]
    best[0][0] = 0.0
    for k in range(1, most + 1):
        for j in range(1, boundaries):
            for i in range(j):
                value = max(best[k - 1][i], costs.slice_cost(i, j))
                if value < best[k][j]:
                    best[k][j], back[k][j] = value, i
    return best, back


def _chosen(costs: Costs, back: list[list[int]], count: int) -> tuple[Cut, ...]:
    chosen, j = [], len(costs.cuts) + 1
    for k in range(count, 0, -1):
        j = back[k][j]
        if j:
            chosen.append(costs.cuts[j - 1])
    return tuple(sorted(chosen, key=lambda c: c.index))


def plan(model: onnx.ModelProto, slices: int, costs: Costs | None = None) -> SlicePlan:
    """``slices`` slices (fewer when the graph has fewer cuts: the plan's count says so) whose largest cost is the
    smallest possible over the cuts (``costs``: measured; default: ``work_costs``)."""
    if not 1 <= slices <= MAX_SLICES:
        raise UsageError(f"--slices is between 1 and {MAX_SLICES}, not {slices}")
    costs = costs or work_costs(model)
    count = min(slices, len(costs.cuts) + 1)
    best, back = _partition(costs, count)
    return _made(model, costs, _chosen(costs, back, count))


def fewest(model: onnx.ModelProto, most_cost: float, costs: Costs | None = None) -> SlicePlan:
    """The fewest slices each costing at most ``most_cost``, balanced (the least largest cost for that count); when
    no count up to ``MAX_SLICES`` gets there, the most slices the graph allows (its plan's ``costs`` say by how
    much they are over)."""
    costs = costs or work_costs(model)
    most = min(MAX_SLICES, len(costs.cuts) + 1)
    best, back = _partition(costs, most)
    count = next((k for k in range(1, most + 1) if best[k][-1] <= most_cost), most)
    return _made(model, costs, _chosen(costs, back, count))


def plan_at(model: onnx.ModelProto, after_nodes: list[int]) -> SlicePlan:
    """A recorded plan cut again: the cuts after the nodes it names (``SlicePlan.to_json``'s ``after_node``)."""
    found, total = cuts(model)
    by_index = {c.index: c for c in found}
    missing = [i for i in after_nodes if i not in by_index]
    if missing:
        raise UsageError(f"the plan cuts after node(s) {missing}, where this graph has no cut")
    return SlicePlan(tuple(by_index[i] for i in sorted(after_nodes)), total, len(model.graph.node))


def _made(model: onnx.ModelProto, costs: Costs, chosen: tuple[Cut, ...]) -> SlicePlan:
    bounds = [0, *(costs.cuts.index(c) + 1 for c in chosen), len(costs.cuts) + 1]
    return SlicePlan(chosen, costs.total_work, len(model.graph.node),
                     tuple(costs.slice_cost(a, b) for a, b in zip(bounds, bounds[1:], strict=False)))


def extract(model: onnx.ModelProto, slice_plan: SlicePlan, k: int) -> onnx.ModelProto:
    """Slice ``k`` of the plan as a model of its own (checked by the ONNX checker)."""
    graph = model.graph
    edges = [0, *(c.index for c in slice_plan.cuts), len(graph.node)]
    start, end = edges[k], edges[k + 1]
    nodes = list(graph.node[start:end])
    if k == 0:
        inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    else:
        cut = slice_plan.cuts[k - 1]
        inputs = [helper.make_tensor_value_info(t, _elem_type(model, t), list(shape))
                  for t, shape in zip(cut.tensors, cut.shapes, strict=True)]
    if k == slice_plan.count - 1:
        outputs = list(graph.output)
        made = {o for n in nodes for o in n.output}
        for value in inputs if k else []:  # a model output made in an earlier slice: handed out as it came
            if value.name in {o.name for o in outputs} and value.name not in made:
                carried = f"{value.name}__carried"
                nodes.insert(0, helper.make_node("Identity", [carried], [value.name], name=f"carried_{value.name}"))
                value.name = carried
    else:
        made = {o for n in nodes for o in n.output}
        outputs = []
        for t, shape in zip(slice_plan.cuts[k].tensors, slice_plan.cuts[k].shapes, strict=True):
            name = t
            if t not in made:  # crossing this slice untouched (a residual): passed through
                name = f"{t}__through{k}"
                nodes.append(helper.make_node("Identity", [t], [name], name=f"through{k}_{t}"))
            outputs.append(helper.make_tensor_value_info(name, _elem_type(model, t), list(shape)))
    needed = {name for n in nodes for name in n.input if name}
    constants = [n for n in graph.node[:start] if n.op_type == "Constant" and set(n.output) & needed]
    initializers = [t for t in graph.initializer if t.name in needed]
    sliced = helper.make_graph(constants + nodes, f"{graph.name or 'model'}_slice{k}", inputs, outputs, initializers)
    out = helper.make_model(sliced, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    onnx.checker.check_model(out)
    return out


def read_at(slice_model: onnx.ModelProto, shifts: list[int]) -> onnx.ModelProto:
    """``slice_model`` taking its input ``i`` as its value times ``2**shifts[i]`` and multiplying it back at once:
    a tensor that leaves the slice before at a scale ``shifts[i]`` finer than the scale this slice reads its inputs
    at arrives as the same field elements read coarser, and the product by the power of two (a scalar: EZKL lays it
    out as a change of scale, no rows) restores its value at its own scale. The inputs keep their places; each
    shifted one is renamed, the tensor it was keeps its name (what the slice's nodes and outputs read)."""
    out = onnx.ModelProto()
    out.CopyFrom(slice_model)
    graph, added = out.graph, []
    for value, shift in zip(graph.input, shifts, strict=True):
        if shift <= 0:
            continue
        name = value.name
        value.name = f"{name}__at{shift}"
        factor = numpy_helper.from_array(np.array(2.0 ** -shift, dtype=np.float32), f"{name}__unshift")
        graph.initializer.append(factor)
        added.append(helper.make_node("Mul", [value.name, factor.name], [name], name=f"unshift_{name}"))
    for node in reversed(added):
        graph.node.insert(0, node)
    onnx.checker.check_model(out)
    return out


def _elem_type(model: onnx.ModelProto, name: str) -> int:
    inferred = shape_inference.infer_shapes(model)
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        if value.name == name:
            return int(value.type.tensor_type.elem_type)
    return onnx.TensorProto.FLOAT


def write_slices(onnx_path: Path, slices: int | SlicePlan, out_dir: Path) -> tuple[SlicePlan, list[Path]]:
    """Write each slice of the model at ``onnx_path`` as ``out_dir/slice-<k>.onnx``: of ``slices`` (a plan, or a
    count planned on the graph's work)."""
    model = onnx.load(str(onnx_path))
    slice_plan = slices if isinstance(slices, SlicePlan) else plan(model, slices)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(slice_plan.count):
        path = out_dir / f"slice-{k}.onnx"
        onnx.save(extract(model, slice_plan, k), str(path))
        paths.append(path)
    return slice_plan, paths


def run_chain(paths: list[Path], inputs: list[np.ndarray]) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Run the slices in order with onnxruntime: (the last slice's outputs, each cut's tensors). Each value is cast
    to its input's declared type (a model's token ids are integers)."""
    import onnxruntime as ort

    from proofmarket.models.runtime import _ORT_TYPES

    between: list[list[np.ndarray]] = []
    current = inputs
    for path in paths:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: np.asarray(v, dtype=_ORT_TYPES.get(i.type, np.float32)).reshape(
                     [d if isinstance(d, int) else 1 for d in i.shape])
                 for i, v in zip(session.get_inputs(), current, strict=True)}
        current = [np.asarray(o) for o in session.run(None, feeds)]
        between.append(current)
    return current, between[:-1]
