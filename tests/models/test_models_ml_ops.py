"""scikit-learn models as skl2onnx exports them by default (ZipMap on, its chosen opsets): the ``ai.onnx.ml``
operators are lowered to standard ONNX in the model check, and the lowered model gives onnxruntime's outputs on
the original, estimator kind by estimator kind; what is not lowered is refused naming why."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

pytest.importorskip("skl2onnx")
import onnxruntime as ort  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeClassifier  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import Binarizer, MaxAbsScaler, MinMaxScaler, Normalizer, StandardScaler  # noqa: E402
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR  # noqa: E402
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor  # noqa: E402

from proofmarket.core.errors import TreeEnsembleTooLarge, UnsupportedOperator  # noqa: E402
from proofmarket.models import load_model, normalize_model  # noqa: E402


def _data(kind: str, features: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(120, features)) * 2 + 1).astype(np.float32)
    score = x[:, 0] - 0.5 * x[:, 1] + 0.3 * x[:, 2] ** 2
    if kind == "regression":
        return x, score + rng.normal(scale=0.1, size=len(x))
    if kind == "binary":
        return x, (score > np.median(score)).astype(np.int64)
    if kind == "four":
        return x, np.digitize(score, np.quantile(score, [0.25, 0.5, 0.75])).astype(np.int64)
    return x, np.digitize(score, np.quantile(score, [0.33, 0.66])).astype(np.int64)


ESTIMATORS: dict[str, tuple[Any, str]] = {
    "standard_scaler_logistic": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), "multiclass"),
    "minmax_normalizer_logistic_binary": (make_pipeline(MinMaxScaler(), Normalizer(), LogisticRegression()),
                                          "binary"),
    "maxabs_l1_logistic": (make_pipeline(MaxAbsScaler(), Normalizer("l1"), LogisticRegression()), "multiclass"),
    "max_norm_linear": (make_pipeline(Normalizer("max"), LinearRegression()), "regression"),
    "binarizer_logistic": (make_pipeline(Binarizer(threshold=1.0), LogisticRegression()), "binary"),
    "linear_regression": (LinearRegression(), "regression"),
    "ridge": (Ridge(alpha=0.5), "regression"),
    "ridge_classifier": (RidgeClassifier(), "multiclass"),
    "linear_svc": (LinearSVC(), "multiclass"),
    "linear_svc_binary": (LinearSVC(), "binary"),
    "linear_svr": (LinearSVR(), "regression"),
    "svr_linear_kernel": (SVR(kernel="linear"), "regression"),
    "svc_linear_kernel": (SVC(kernel="linear"), "multiclass"),  # one-vs-one votes, skl2onnx's ovr graph after them
    "svc_linear_kernel_binary": (SVC(kernel="linear"), "binary"),
    "svc_linear_kernel_four": (make_pipeline(StandardScaler(), SVC(kernel="linear", C=0.5)), "four"),
    "mlp_classifier": (MLPClassifier((12,), max_iter=400, random_state=0), "multiclass"),
    "pca_logistic": (make_pipeline(PCA(n_components=3), LogisticRegression(max_iter=500)), "multiclass"),
    "decision_tree": (DecisionTreeClassifier(max_depth=4, random_state=0), "multiclass"),
    "decision_tree_regressor": (DecisionTreeRegressor(max_depth=4, random_state=0), "regression"),
    "random_forest": (RandomForestClassifier(n_estimators=6, max_depth=3, random_state=0), "multiclass"),
    "random_forest_binary": (RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0), "binary"),
    "random_forest_regressor": (RandomForestRegressor(n_estimators=5, max_depth=3, random_state=0), "regression"),
    "gradient_boosting": (GradientBoostingClassifier(n_estimators=6, max_depth=2, random_state=0), "multiclass"),
    "gradient_boosting_binary": (GradientBoostingClassifier(n_estimators=6, max_depth=2, random_state=0), "binary"),
    "gradient_boosting_regressor": (GradientBoostingRegressor(n_estimators=6, max_depth=2, random_state=0),
                                    "regression"),
}


def _export(estimator: Any, kind: str, path: Path, **options: Any) -> tuple[Path, np.ndarray]:
    x, y = _data(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(x, y)
        onx = to_onnx(estimator, x[:1], options=options or None)
    path.write_bytes(onx.SerializeToString())
    return path, x


def _rows(outputs: list[Any]) -> list[np.ndarray]:
    """onnxruntime's outputs as arrays: a ZipMap's list of {label: probability} as one row per map."""
    return [np.asarray([[row[k] for k in sorted(row)] for row in out]) if isinstance(out, list) else np.asarray(out)
            for out in outputs]


def _same_as_onnxruntime(original: Path, lowered: Path, inputs: np.ndarray) -> None:
    before, after = ort.InferenceSession(str(original)), ort.InferenceSession(str(lowered))
    name = before.get_inputs()[0].name
    for row in inputs:
        want = _rows(before.run(None, {name: row[None, :]}))
        got = _rows(after.run(None, {after.get_inputs()[0].name: row[None, :]}))
        for w, g in zip(want, got, strict=True):
            if w.dtype.kind in "iu":
                assert np.array_equal(w.ravel(), g.ravel())  # the label: exactly onnxruntime's
            else:
                np.testing.assert_allclose(g.reshape(w.shape), w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_each_estimator_kind_is_lowered_to_what_onnxruntime_computes(name: str, tmp_path: Path) -> None:
    estimator, kind = ESTIMATORS[name]
    original, x = _export(estimator, kind, tmp_path / f"{name}.onnx")
    assert any(n.domain == "ai.onnx.ml" for n in onnx.load(str(original)).graph.node)
    info = normalize_model(original, tmp_path / "lowered.onnx")
    lowered = onnx.load(str(tmp_path / "lowered.onnx"))
    assert not any(n.domain == "ai.onnx.ml" for n in lowered.graph.node)
    assert info.notes  # what was rewritten, in words
    probes = np.concatenate([x[:40], (np.random.default_rng(3).normal(size=(40, x.shape[1])) * 3).astype(np.float32)])
    _same_as_onnxruntime(original, tmp_path / "lowered.onnx", probes)
    assert load_model(original).is_classifier is (kind != "regression")


def test_zipmap_is_served_as_the_probabilities_tensor_and_string_labels_as_their_index(tmp_path: Path) -> None:
    x, y = _data("multiclass")
    names = np.asarray(["setosa", "versicolor", "virginica"])[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(max_iter=500).fit(x, names)
        (tmp_path / "m.onnx").write_bytes(to_onnx(model, x[:1]).SerializeToString())
    info = load_model(tmp_path / "m.onnx")
    assert [(o.name, o.shape, o.dtype) for o in info.outputs] == [("output_label", (1,), "int64"),
                                                                  ("output_probability", (1, 3), "float32")]
    notes = " ".join(info.notes)
    assert "ZipMap" in notes and "[setosa, versicolor, virginica]" in notes and "class index" in notes
    normalize_model(tmp_path / "m.onnx", tmp_path / "low.onnx")
    session = ort.InferenceSession(str(tmp_path / "low.onnx"))
    label, probabilities = session.run(None, {session.get_inputs()[0].name: x[:1]})
    assert int(label[0]) == list(model.classes_).index(model.predict(x[:1])[0])
    np.testing.assert_allclose(probabilities, model.predict_proba(x[:1]), atol=1e-5)


def test_a_tree_ensemble_over_the_limits_is_refused_naming_the_limit(tmp_path: Path) -> None:
    deep = DecisionTreeRegressor(max_depth=None, min_samples_leaf=1, random_state=0)
    x = np.random.default_rng(0).normal(size=(20_000, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deep.fit(x, np.random.default_rng(1).normal(size=len(x)))
        (tmp_path / "deep.onnx").write_bytes(to_onnx(deep, x[:1]).SerializeToString())
    with pytest.raises(TreeEnsembleTooLarge) as raised:
        load_model(tmp_path / "deep.onnx")
    assert raised.value.code == "tree_ensemble_too_large"
    assert "limit" in raised.value.message and "smaller ensemble" in raised.value.message
    assert raised.value.message.endswith(".") and raised.value.message.count(". ") == 0


def test_a_kernel_svm_is_refused_saying_what_to_export_instead(tmp_path: Path) -> None:
    original, _ = _export(SVC(kernel="rbf"), "multiclass", tmp_path / "svc.onnx")
    with pytest.raises(UnsupportedOperator) as raised:
        load_model(original)
    assert "rbf kernel" in raised.value.message and "LinearSVC" in raised.value.message
    assert raised.value.details["operators"] == ["ai.onnx.ml.SVMClassifier"]


def test_a_tree_whose_nodes_are_shared_is_bounded_by_its_paths_not_its_listed_leaves(tmp_path: Path) -> None:
    """A hand-made ensemble whose splits send both branches to the same next split lists 13 nodes but has 2^12
    paths per tree: 500 such trees would be 2 million paths, refused by the leaves limit before they are built."""
    from onnx import TensorProto, helper

    trees, depth = 5, 12
    ids, nodes, features, values, modes, trues, falses = [], [], [], [], [], [], []
    for tree in range(trees):
        for level in range(depth + 1):
            ids.append(tree)
            nodes.append(level)
            features.append(0)
            values.append(0.5)
            modes.append("LEAF" if level == depth else "BRANCH_LEQ")
            trues.append(level + 1 if level < depth else 0)
            falses.append(level + 1 if level < depth else 0)
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1, nodes_treeids=ids,
        nodes_nodeids=nodes, nodes_featureids=features, nodes_values=values, nodes_modes=modes,
        nodes_truenodeids=trues, nodes_falsenodeids=falses, target_treeids=list(range(trees)),
        target_nodeids=[depth] * trees, target_ids=[0] * trees, target_weights=[1.0] * trees)
    graph = helper.make_graph([node], "dag", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 3)])
    (tmp_path / "dag.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(TreeEnsembleTooLarge, match="paths to its leaves"):
        load_model(tmp_path / "dag.onnx")


FLOAT64_EXPORTS: dict[str, tuple[Any, str]] = {  # fitted and exported on numpy's default float64 arrays
    "standard_scaler_logistic": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), "binary"),
    "random_forest_regressor": (RandomForestRegressor(n_estimators=4, max_depth=3, random_state=0), "regression"),
    "gradient_boosting": (GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0), "multiclass"),
    "imputer_logistic": (make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression()), "multiclass"),
    "linear_regression": (LinearRegression(), "regression"),
}


@pytest.mark.parametrize("name", sorted(FLOAT64_EXPORTS))
def test_a_float64_export_is_computed_in_float32_and_gives_onnxruntimes_outputs(name: str, tmp_path: Path) -> None:
    """``to_onnx(model, X[:1])`` on float64 data writes a double graph (one onnxruntime itself cannot load): accepted,
    computed in float32, said so, and the lowered model gives the estimator's own answers."""
    estimator, kind = FLOAT64_EXPORTS[name]
    x, y = _data(kind)
    x64 = x.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator.fit(x64, y)
        onx = to_onnx(estimator, x64[:1])
    assert onx.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    original = tmp_path / "m64.onnx"
    original.write_bytes(onx.SerializeToString())
    info = normalize_model(original, tmp_path / "lowered.onnx")
    assert info.inputs[0].dtype == "float32"
    assert any("float64" in note for note in info.notes)
    lowered = ort.InferenceSession(str(tmp_path / "lowered.onnx"))  # (onnxruntime refuses skl2onnx's double graph)
    for row in x64[:30]:
        got = lowered.run(None, {lowered.get_inputs()[0].name: row[None, :].astype(np.float32)})
        if kind == "regression":
            np.testing.assert_allclose(np.ravel(got[0]), estimator.predict(row[None, :]), rtol=1e-4, atol=1e-4)
        else:
            assert int(np.ravel(got[0])[0]) == int(estimator.predict(row[None, :])[0])
            np.testing.assert_allclose(got[1], estimator.predict_proba(row[None, :]), rtol=1e-4, atol=1e-4)


def test_an_imputer_of_a_finite_value_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    original, _ = _export(make_pipeline(SimpleImputer(missing_values=-1.0), LogisticRegression()), "binary",
                          tmp_path / "imp.onnx")
    with pytest.raises(UnsupportedOperator) as raised:
        load_model(original)
    assert "Imputer" in raised.value.message and "np.nan" in raised.value.message
