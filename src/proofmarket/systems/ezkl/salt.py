"""Salted inputs for the ``hashed`` input profile.

A Poseidon hash of a low-entropy input (an 8x8 image, a few features) can be brute-forced. We
append random salt elements to the first input before it is hashed: the circuit sees one flat input
``[x..., salt...]``, slices ``x`` back out and reshapes it, so the model computes exactly what it did
before while the public hash now commits to (x, salt). The salt goes back to the consumer with the
output; with it anyone holding x can recompute the commitment.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from proofmarket.core.errors import UsageError
from proofmarket.models.inputs import FlatInput
from proofmarket.systems.ezkl.profile import SALT_BITS, SALT_ELEMENTS

if TYPE_CHECKING:  # onnx and numpy load where a model is salted (compile), not where its calls are proven
    import numpy as np
    import onnx

SALTED_INPUT = "salted_input"


def new_salt() -> list[int]:
    """SALT_ELEMENTS random integers of SALT_BITS each (exact in float32, so quantisation keeps them)."""
    return [secrets.randbelow(1 << SALT_BITS) for _ in range(SALT_ELEMENTS)]


def check_salt(salt_elements: int, salt: list[int] | None, *, required: bool) -> list[int] | None:
    """The salt a model with ``salt_elements`` salt inputs takes (0: a public input, no salt).

    A missing salt is drawn fresh unless ``required`` (a commitment computed before proving must use
    the salt the consumer will send). Refuses a salt of the wrong length or with values outside
    [0, 2^SALT_BITS): the circuit would quantise those differently from the commitment.
    """
    if not salt_elements:
        if salt is not None:
            raise UsageError("this model's input is public: it takes no salt")
        return None
    if salt is None:
        if required:
            raise UsageError(f"this model hashes its input with a salt of {salt_elements} integers: give it")
        return new_salt()
    if len(salt) != salt_elements or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << SALT_BITS for v in salt):
        raise UsageError(f"the salt must be {salt_elements} integers in [0, 2^{SALT_BITS})")
    return list(salt)


def salt_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` whose first input is replaced by a flat, salted one."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    salted = onnx.ModelProto()
    salted.CopyFrom(model)
    graph = salted.graph
    initializer_names = {init.name for init in graph.initializer}
    first = next(i for i in graph.input if i.name not in initializer_names)
    shape = [d.dim_value for d in first.type.tensor_type.shape.dim]
    size = math.prod(shape)
    graph.initializer.extend([
        numpy_helper.from_array(np.array([0], dtype=np.int64), "salt_slice_start"),
        numpy_helper.from_array(np.array([size], dtype=np.int64), "salt_slice_end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "salt_slice_axis"),
        numpy_helper.from_array(np.array(shape, dtype=np.int64), "salt_shape"),
    ])
    nodes = [
        helper.make_node("Slice", [SALTED_INPUT, "salt_slice_start", "salt_slice_end", "salt_slice_axis"],
                         ["salt_unsalted_flat"], name="salt_slice"),
        helper.make_node("Reshape", ["salt_unsalted_flat", "salt_shape"], [first.name], name="salt_reshape"),
    ]
    for node in reversed(nodes):
        graph.node.insert(0, node)
    new_input = helper.make_tensor_value_info(SALTED_INPUT, TensorProto.FLOAT, [1, size + SALT_ELEMENTS])
    position = list(graph.input).index(first)
    graph.input.remove(first)
    graph.input.insert(position, new_input)
    return salted


def circuit_input(inputs: Sequence[FlatInput | np.ndarray], salt: list[int] | None = None) -> list[list[float]]:
    """The circuit's input_data: one flat float list per model input (a checked input, ``models.parse_flat``, or an
    array), the salt (if any) after the first."""
    flat = [list(a.values) if isinstance(a, FlatInput) else _floats(a) for a in inputs]
    if salt is not None:
        flat[0] = [*flat[0], *(float(s) for s in salt)]
    return flat


def _floats(array: np.ndarray) -> list[float]:
    import numpy as np

    return np.asarray(array, dtype=np.float64).ravel().tolist()
