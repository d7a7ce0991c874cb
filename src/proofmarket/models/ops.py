"""Which ONNX operators and opsets proofmarket accepts.

Every operator below is proved soundly by EZKL 23.0.5 on a tiny model: ``tests/models/test_models_ezkl.py``
(marked slow) compiles each one, checks that the witness outputs match onnxruntime, makes a real proof,
verifies it, and checks that the proof with one byte flipped is rejected. Left out, with the reason:
``Gelu`` (not implemented by tract), ``RandomNormalLike`` and other random ops (nothing to prove),
``NonZero``/``NonMaxSuppression``/``Unique`` (data-dependent shapes), ``TopK`` (its two-output form fails),
``Equal`` (EZKL proves ``Equal -> Cast`` with the boolean at the wrong scale: a proof of a wrong answer; the
check writes it as ``Not(Less or Greater)`` instead: ``rewrites.py``),
``Max`` of two tensors, ``Mod``, ``Tile``, ``ScatterND``/``ScatterElements`` (EZKL 23.0.5 fails or panics on
them), ``MeanVarianceNormalization``, and every operator outside the standard ONNX domain (com.microsoft's fused
kernels; the ``ai.onnx.ml`` operators skl2onnx writes are lowered to standard ones first: ``ml_ops``).

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
        "ConstantOfShape",  # folded when its shape is constant, like Shape and Constant
        "Range",
        # widened for issue 9 (tests/models/test_models_ezkl.py proves each one and rejects a tampered proof)
        "Pow",
        "PRelu",
        "Celu",
        "ThresholdedRelu",
        "Shrink",
        "HardSwish",
        "Hardmax",
        "Sign",
        "Floor",
        "Ceil",
        "Round",
        "Min",
        "Mean",
        "Sin",
        "Cos",
        "Tan",
        "Asin",
        "Acos",
        "Atan",
        "Sinh",
        "Cosh",
        "Asinh",
        "Atanh",
        "Less",
        "Greater",
        "LessOrEqual",
        "GreaterOrEqual",
        "Not",
        "And",
        "Or",
        "Xor",
        "Where",
        "GatherElements",
        "GatherND",
        "OneHot",
        "Trilu",
        "InstanceNormalization",
        "LayerNormalization",
        "Resize",
        "ConvTranspose",
        "LSTM",
        "GRU",
        "RNN",
        "ReduceMin",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSumExp",
        "ReduceSumSquare",
        "ReduceProd",
        "Einsum",
        "Split",
        "DepthToSpace",
        "SpaceToDepth",
        "CumSum",
        "Tile",
        "TopK",
    }
)

#: Operators whose ``strides`` attribute EZKL needs spelled out.
OPS_NEEDING_STRIDES: frozenset[str] = frozenset({"Conv", "MaxPool", "AveragePool"})

DEFAULT_DOMAINS: frozenset[str] = frozenset({"", "ai.onnx"})
