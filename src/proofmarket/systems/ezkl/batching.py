"""Batched circuits: one proof over K calls of the same model.

The batch circuit is the model's circuit ONNX repeated K times side by side (``replicate``): slot ``i`` has its own
inputs ``s<ii>.<name>`` and outputs ``s<ii>.<name>``, the weights are shared. EZKL lays the public instances out input
by input, then output by output, so slot ``i``'s input instances and output instances are each one contiguous run:
a slot's input commitment and output hash are the same keccak of its own instances that a single proof carries.

Which calls may share a proof: only models of the ``public`` privacy profile (public input, fixed weights). Every
instance of a batched proof is in each caller's bundle; a hashed input would stay private but its output would not,
so private-input models are always proven alone. Unused slots are padded with zeros (an input nobody sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from proofmarket.core.errors import CircuitCompileError
from proofmarket.systems.ezkl.manifest import InstanceLayout

if TYPE_CHECKING:  # onnx loads where a batch circuit is built (compile), not where one is proven
    import onnx

BATCHABLE_PROFILES = ("public",)
MAX_BATCH = 64


def slot_name(slot: int, name: str) -> str:
    return f"s{slot:02d}.{name}"  # zero-padded: any order of names is the order of slots


def replicate(model: onnx.ModelProto, k: int) -> onnx.ModelProto:
    """``model`` repeated ``k`` times in one graph (inputs and outputs slot by slot, weights shared)."""
    import onnx
    from onnx import helper

    if not 1 <= k <= MAX_BATCH:
        raise CircuitCompileError(f"a batch holds 1 to {MAX_BATCH} calls, not {k}")
    graph = model.graph
    shared = {init.name for init in graph.initializer} | {""}
    if any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for node in graph.node for attr in node.attribute):
        raise CircuitCompileError("a model with subgraphs (If, Loop, Scan) is not batched")

    def rename(slot: int, name: str) -> str:
        return name if name in shared else slot_name(slot, name)

    inputs, outputs, nodes, infos = [], [], [], []
    for slot in range(k):
        for value in graph.input:
            if value.name not in shared:
                inputs.append(_renamed_value(value, slot_name(slot, value.name)))
        for value in graph.output:
            outputs.append(_renamed_value(value, rename(slot, value.name)))
        for value in graph.value_info:
            infos.append(_renamed_value(value, rename(slot, value.name)))
        for node in graph.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name = slot_name(slot, node.name or node.op_type)
            copy.ClearField("input")
            copy.ClearField("output")
            copy.input.extend(rename(slot, n) for n in node.input)
            copy.output.extend(rename(slot, n) for n in node.output)
            nodes.append(copy)
    batched = helper.make_graph(nodes, f"{graph.name}-batch{k}", inputs, outputs, list(graph.initializer),
                                value_info=infos)
    out = helper.make_model(batched, opset_imports=list(model.opset_import), producer_name="proofmarket-batch")
    out.ir_version = model.ir_version
    return out


def _renamed_value(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    import onnx

    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value)
    copy.name = name
    return copy


def batch_input(slots: list[list[list[float]]], k: int) -> list[list[float]]:
    """The batch circuit's input_data: each slot's flat inputs in order, the unused slots as zeros."""
    if not slots or len(slots) > k:
        raise ValueError(f"a batch of size {k} takes 1 to {k} calls, not {len(slots)}")
    pad = [[0.0] * len(values) for values in slots[0]]
    return [values for flat in [*slots, *[pad] * (k - len(slots))] for values in flat]


@dataclass(frozen=True)
class Slot:
    """Where one call's instances sit in a batched proof's instances."""

    input: slice
    output: slice
    output_scales: list[int]


def slot_of(layout: InstanceLayout, size: int, slot: int) -> Slot:
    """Slot ``slot`` of a batch circuit of ``size`` calls with ``layout`` (the whole circuit's)."""
    if not 0 <= slot < size or layout.input % size or layout.output % size or \
            len(layout.output_scales) % size or layout.params:
        raise ValueError(f"no slot {slot} in a batch of {size} with this layout")
    per_in, per_out, per_scales = layout.input // size, layout.output // size, len(layout.output_scales) // size
    first_out = layout.input + layout.params
    return Slot(slice(slot * per_in, (slot + 1) * per_in),
                slice(first_out + slot * per_out, first_out + (slot + 1) * per_out),
                layout.output_scales[slot * per_scales:(slot + 1) * per_scales])


#: a proof's fixed cost (keys, SRS, transcript) in rows: measured here, a logrows-10 proof of the sample MLP takes
#: ~118 ms of which ~40 ms do not depend on its rows, about the work of 2^9 rows
PROOF_OVERHEAD_ROWS = 512


def plan(calls: int, logrows: dict[int, int]) -> list[tuple[int, int]]:
    """How to prove ``calls`` calls at the least total work: a list of (circuit size, calls in it), size 1 being the
    model's own circuit (a call alone). ``logrows``: each circuit's logrows by size (1 included). A proof's work is
    its rows plus its fixed cost: 7 calls in a batch of 16 do not beat a batch of 4 and three proofs alone."""
    cost = {k: 2 ** lr + PROOF_OVERHEAD_ROWS for k, lr in logrows.items()}
    best: list[float] = [0.0] + [float("inf")] * calls
    pick: list[tuple[int, int]] = [(1, 1)] * (calls + 1)
    for m in range(1, calls + 1):
        for k, c in cost.items():
            take = min(k, m)
            if (k == 1 or take >= 2) and best[m - take] + c < best[m]:
                best[m], pick[m] = best[m - take] + c, (k, take)
    groups, m = [], calls
    while m > 0:
        groups.append(pick[m])
        m -= pick[m][1]
    return sorted(groups, reverse=True)


