"""A corpus of hostile upload files, built in code (a few hundred bytes each): what an attacker with a free wallet
sends a node that takes listings from anyone. Each entry names the file, the field it goes in, and the error codes
a node may answer it with (one stable code naming the limit or the defect; never 2xx, never 5xx).

    onnx bombs       ConstantOfShape / Expand / Tile / Range of 2^27..2^33 elements from constants (a 212-byte
                     file that folds to gigabytes), and one whose size only folding reveals (Mul of constants)
    onnx lies        an initializer declared [1] holding megabytes, one kept "externally" at a path outside, a
                     graph nested a thousand Ifs deep, local functions calling themselves, malformed protobuf
    sample bombs     a 65 KB npz of deflated zeros (gigabytes unpacked), an npy whose header declares 2^40 values,
                     JSON with too many samples, a sample file over the node's byte cap
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from proofmarket.samples import sample_path


@dataclass(frozen=True)
class Hostile:
    name: str
    onnx: bytes
    samples: bytes
    samples_name: str
    codes: frozenset[str]


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto] | None = None, *,
           graph_kw: dict[str, object] | None = None, **model_kw: object) -> bytes:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], inits or [],
                              **(graph_kw or {}))
    model_kw.setdefault("opset_imports", [helper.make_opsetid("", 13)])
    model = helper.make_model(graph, **model_kw)
    model.ir_version = 8
    return model.SerializeToString()


def _ints(name: str, values: list[int]) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _sum_into_y(tensor: str) -> list[onnx.NodeProto]:
    return [helper.make_node("ReduceSum", [tensor], ["s"], keepdims=0),
            helper.make_node("Add", ["x", "s"], ["y"])]


def constant_of_shape_bomb(n: int) -> bytes:
    """The review's 212-byte file: ConstantOfShape([n]) then ReduceSum (n = 2^27 cost a node +1 GB)."""
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    return _model([helper.make_node("ConstantOfShape", ["shape"], ["c"], value=fill), *_sum_into_y("c")],
                  [_ints("shape", [n])])


def expand_bomb(n: int) -> bytes:
    return _model([helper.make_node("Expand", ["one", "shape"], ["c"]), *_sum_into_y("c")],
                  [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]), _ints("shape", [n])])


def tile_bomb(n: int) -> bytes:
    return _model([helper.make_node("Tile", ["one", "reps"], ["c"]), *_sum_into_y("c")],
                  [helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0]), _ints("reps", [n])])


def range_bomb(n: int) -> bytes:
    scalars = [helper.make_tensor(k, TensorProto.FLOAT, [], [v]) for k, v in (("a", 0.0), ("b", float(n)),
                                                                               ("d", 1.0))]
    return _model([helper.make_node("Range", ["a", "b", "d"], ["c"]), *_sum_into_y("c")], scalars)


def hidden_bomb(side: int) -> bytes:
    """The shape is a product of constants: only folding finds its size (side^2 floats)."""
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    return _model([helper.make_node("Mul", ["side", "side"], ["n"]),
                   helper.make_node("ConstantOfShape", ["n"], ["c"], value=fill), *_sum_into_y("c")],
                  [_ints("side", [side])])


def concat_bomb(parts: int, each: int) -> bytes:
    """``parts`` constants each under the per-tensor cap, concatenated past it: the cap sees the sum only after
    folding allocated it, so only the sandbox's memory limit stops it."""
    fill = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    nodes = [helper.make_node("ConstantOfShape", ["shape"], [f"c{i}"], value=fill) for i in range(parts)]
    nodes.append(helper.make_node("Concat", [f"c{i}" for i in range(parts)], ["c"], axis=0))
    return _model([*nodes, *_sum_into_y("c")], [_ints("shape", [each])])


def initializer_larger_than_declared(megabytes: int) -> bytes:
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    w.ClearField("float_data")
    w.raw_data = b"\0" * (megabytes << 20)
    return _model([helper.make_node("Add", ["x", "w"], ["y"])], [w])


def external_data(location: str) -> bytes:
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [0.0])
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    return _model([helper.make_node("Add", ["x", "w"], ["y"])], [w])


def nested_ifs(depth: int) -> bytes:
    """Graphs inside If nodes, ``depth`` levels, encoded by hand (the protobuf library refuses to build one this
    deep): more nesting than a parser or a checker should recurse into."""
    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    graph = field(1, field(4, b"Identity") + field(1, b"x") + field(2, b"y"))  # NodeProto: op_type, input, output
    for _ in range(depth):
        attribute = field(1, b"then_branch") + field(6, graph) + _varint(20 << 3) + _varint(5)  # type GRAPH
        graph = field(1, field(4, b"If") + field(1, b"cond") + field(2, b"y") + field(5, attribute))
    opset = field(2, b"") + _varint(2 << 3) + _varint(13)
    return _varint(1 << 3) + _varint(8) + field(7, graph) + field(8, opset)  # ir_version, graph, opset_import


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def recursive_function() -> bytes:
    """A local function that calls itself: a checker or an inliner that follows it never ends."""
    call = helper.make_node("Loopy", ["a"], ["b"], domain="local")
    fn = helper.make_function("local", "Loopy", ["a"], ["b"], [call], [helper.make_opsetid("", 13)])
    return _model([helper.make_node("Loopy", ["x"], ["y"], domain="local")],
                  functions=[fn], opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("local", 1)])


def malformed_protobuf() -> bytes:
    return b"\x0a\xff\xff\xff\xff\x0f" + bytes(range(256)) * 4


def npz_zip_bomb(unpacked_bytes: int) -> bytes:
    """An .npz of deflated zeros: ~65 KB on the wire for 64 MiB unpacked (the review's file)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (unpacked_bytes // 8,)})
    out = io.BytesIO()
    zeros = b"\0" * (1 << 20)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive, \
            archive.open("x.npy", "w", force_zip64=True) as member:
        member.write(header.getvalue())
        for _ in range(unpacked_bytes >> 20):
            member.write(zeros)
    return out.getvalue()


def npy_huge_header(values: int) -> bytes:
    """An .npy whose header declares ``values`` float64s and holds none of them."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (values,)})
    return header.getvalue() + struct.pack("<d", 0.0)


def too_many_json_samples(count: int) -> bytes:
    return ('{"inputs":[' + ",".join(['{"x":[0]}'] * count) + "]}").encode()


ONE_SAMPLE = b'{"inputs":[{"x":[0.5]}]}'
BOMB = frozenset({"tensor_too_large", "model_over_budget"})
BAD = frozenset({"invalid_model", "unsupported_operator"})


def corpus(max_samples_bytes: int) -> list[Hostile]:
    mlp = sample_path("mlp").read_bytes()
    return [
        Hostile("constant_of_shape_2^27", constant_of_shape_bomb(1 << 27), ONE_SAMPLE, "s.json", BOMB),
        Hostile("constant_of_shape_2^33", constant_of_shape_bomb(1 << 33), ONE_SAMPLE, "s.json", BOMB),
        Hostile("expand_2^30", expand_bomb(1 << 30), ONE_SAMPLE, "s.json", BOMB),
        Hostile("tile_2^30", tile_bomb(1 << 30), ONE_SAMPLE, "s.json", BOMB),
        Hostile("range_2^30", range_bomb(1 << 30), ONE_SAMPLE, "s.json", BOMB),
        Hostile("folded_2^30", hidden_bomb(1 << 15), ONE_SAMPLE, "s.json", BOMB),
        Hostile("concat_past_the_cap", concat_bomb(48, (1 << 24) - 1), ONE_SAMPLE, "s.json", BOMB),
        Hostile("initializer_declared_small", initializer_larger_than_declared(8), ONE_SAMPLE, "s.json", BAD),
        Hostile("external_data_path", external_data("../../../../etc/passwd"), ONE_SAMPLE, "s.json", BAD),
        Hostile("nested_ifs", nested_ifs(1000), ONE_SAMPLE, "s.json", BAD),
        Hostile("recursive_function", recursive_function(), ONE_SAMPLE, "s.json", BAD),
        Hostile("malformed_protobuf", malformed_protobuf(), ONE_SAMPLE, "s.json", BAD),
        Hostile("npz_zip_bomb", mlp, npz_zip_bomb(65 << 20), "s.npz", frozenset({"samples_too_large"})),
        Hostile("npy_declares_2^40", mlp, npy_huge_header(1 << 40), "s.npy", frozenset({"samples_too_large"})),
        Hostile("json_too_many_samples", mlp, too_many_json_samples(200_000), "s.json",
                frozenset({"input_too_large", "samples_too_large"})),
        Hostile("samples_over_byte_cap", mlp, b" " * (max_samples_bytes + 1), "s.json",
                frozenset({"samples_too_large"})),
    ]
