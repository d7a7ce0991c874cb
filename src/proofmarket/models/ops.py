"""Which ONNX operators and opsets proofmarket accepts.

Every operator below was put through EZKL 23.0.5 on a tiny one-node model (gen_settings,
calibrate_settings with target "resources", compile_circuit, gen_witness, mock) and passed;
``tests/models/test_allowlist_ezkl.py`` (marked slow) repeats that check. The list is deliberately
conservative: some operators that EZKL also handles (LSTM, TopK with one output, Where, Einsum, Sin,
Floor, ...) are left out until a use needs them. Seen failing in EZKL 23.0.5: ``Gelu``
(not implemented by tract), ``RandomNormalLike``, ``NonMaxSuppression`` (data-dependent shape),
two-output ``TopK``, and ``Max`` of two same-shape tensors.

Conv, MaxPool and AveragePool need an explicit ``strides`` attribute in EZKL (it does not apply the
ONNX default); :func:`proofmarket.models.normalize_model` writes it in.
"""

from __future__ import annotations

#: Lowest and highest default-domain ONNX opset accepted (onnxruntime 1.31 loads up to 23 here).
MIN_OPSET = 9
MAX_OPSET = 23

#: Operators of the default ONNX domain that EZKL 23.0.5 was seen to compile and mock.
SUPPORTED_OPS: frozenset[str] = frozenset(
    {
        # linear algebra
        "Gemm",
        "MatMul",
        "Conv",
        # element-wise arithmetic
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sum",
        "Neg",
        "Abs",
        "Sqrt",
        "Reciprocal",
        # activations
        "Relu",
        "LeakyRelu",
        "Sigmoid",
        "HardSigmoid",
        "Tanh",
        "Softplus",
        "Softsign",
        "Elu",
        "Selu",
        "Clip",
        "Exp",
        "Log",
        "Erf",
        "Softmax",
        "LogSoftmax",
        # pooling and normalisation
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "BatchNormalization",
        # reductions
        "ReduceMean",
        "ReduceSum",
        "ReduceMax",
        "ArgMax",
        # shape and data movement
        "Flatten",
        "Reshape",
        "Transpose",
        "Concat",
        "Squeeze",
        "Unsqueeze",
        "Pad",
        "Slice",
        "Gather",
        "Expand",
        "Shape",
        "Cast",
        "Constant",
        "Identity",
        "Dropout",
    }
)

#: Operators whose ``strides`` attribute EZKL needs spelled out.
OPS_NEEDING_STRIDES: frozenset[str] = frozenset({"Conv", "MaxPool", "AveragePool"})

DEFAULT_DOMAINS: frozenset[str] = frozenset({"", "ai.onnx"})
