"""A compatibility corpus: small models exported the ordinary way, by several exporters, built on the spot.

    python scripts/build_corpus.py OUT_DIR                 build the models and their sample files
    python scripts/build_corpus.py OUT_DIR --report FILE   ... then compile and prove each accepted one and
                                                           write the compatibility table (docs/compatibility.md)

Nothing is downloaded: weights are seeded random (or fitted on generated data for scikit-learn). Each
entry: ``OUT_DIR/<name>.onnx``, ``<name>.samples.json`` (EZKL calibration form) and ``<name>.input.json``.
``EXPECTED`` says what ``proofmarket compile`` must do with each (``tests/models/test_corpus.py`` checks it):
``accepted``, or the error code and the operator its one sentence names.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Entry:
    name: str
    exporter: str
    what: str
    build: Callable[[Path], tuple[int, ...]]  # writes the .onnx, returns the input shape


def _torch_export(module: Any, shape: tuple[int, ...], path: Path, *, dynamo: bool = False,
                  opset: int = 13) -> tuple[int, ...]:
    import torch

    module.eval()
    example = torch.rand(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            # external_data=False: one self-contained file (proofmarket refuses weights kept in side files)
            torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=18, verbose=False,
                              external_data=False)
        else:
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset,
                              input_names=["x"], output_names=["y"])
    return shape


def _torch_default(module: Any, shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    """``torch.onnx.export(model, (example,), path)`` and nothing else: torch 2.13's default (dynamo) exporter, which
    writes the weights beside the model (``path.data``)."""
    import torch

    module.eval()
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.rand(*shape),), str(path))
    return shape


class _quiet:  # the dynamo exporter prints its progress on stdout
    def __enter__(self) -> None:
        import contextlib
        import io

        self._redirect = contextlib.redirect_stdout(io.StringIO())
        self._redirect.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(*exc)


def _nn() -> Any:
    import torch

    torch.manual_seed(0)
    return torch.nn


class Residual:  # built lazily: torch is imported only when the corpus is built
    @staticmethod
    def make(dim: int = 8) -> Any:
        nn = _nn()

        class Block(nn.Module):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.inner, self.outer, self.head = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, 2)

            def forward(self, x: Any) -> Any:
                return self.head(x + self.outer(nn.functional.relu(self.inner(x))))

        return Block()


class Attention:  # built lazily: torch is imported only when the corpus is built
    @staticmethod
    def make(dim: int = 8) -> Any:
        import torch

        nn = _nn()

        class Block(nn.Module):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
                self.out = nn.Linear(dim, dim)

            def forward(self, x: Any) -> Any:
                scores = self.q(x) @ self.k(x).transpose(1, 2) / dim ** 0.5
                return self.out(torch.softmax(scores, dim=-1) @ self.v(x))

        return Block()


class Recurrent:
    @staticmethod
    def make(kind: str) -> Any:
        nn = _nn()

        class Net(nn.Module):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(3, 4, batch_first=True)
                self.head = nn.Linear(4, 2)

            def forward(self, x: Any) -> Any:
                out, _ = self.rnn(x)
                return self.head(out[:, -1, :])

        return Net()


def _sk_data(n_features: int, seed: int = 0, classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((64 if classes == 2 else 150, n_features)).astype(np.float32)
    score = x[:, 0] + x[:, 1]
    if classes == 0:  # regression
        return x, (2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2] + 0.05 * rng.normal(size=len(x))).astype(np.float32)
    if classes == 2:
        return x, (score > 1.0).astype(np.int64)
    return x, np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.int64)


def _skl_default(model: Any, n_features: int, path: Path, classes: int = 3) -> tuple[int, ...]:
    """``skl2onnx.to_onnx(model, X[:1])`` and nothing else: its default opsets, ZipMap on, the batch dynamic."""
    from skl2onnx import to_onnx

    x, y = _sk_data(n_features, classes=classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y)
        path.write_bytes(to_onnx(model, x[:1]).SerializeToString())
    return (1, n_features)


def _skl(model: Any, n_features: int, path: Path, options: dict[Any, Any] | None = None) -> tuple[int, ...]:
    from skl2onnx import to_onnx

    x, y = _sk_data(n_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y)
        onx = to_onnx(model, x[:1], options=options or {}, target_opset={"": 13, "ai.onnx.ml": 3})
    _fix_batch(onx)
    path.write_bytes(onx.SerializeToString())
    return (1, n_features)


def _fix_batch(model: Any) -> None:
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].dim_value:
            dims[0].dim_value = 1


def _hummingbird_tree(path: Path) -> tuple[int, ...]:
    """A decision tree turned into tensor ops by hummingbird (GEMM strategy), exported by torch."""
    from hummingbird.ml import convert
    from sklearn.tree import DecisionTreeClassifier

    x, y = _sk_data(4)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = convert(tree, "torch", extra_config={"tree_implementation": "gemm"})
    return _torch_export(converted.model, (1, 4), path)


def entries() -> list[Entry]:
    def mod(factory: Callable[[], Any], shape: tuple[int, ...],
            dynamo: bool = False) -> Callable[[Path], tuple[int, ...]]:
        return lambda path: _torch_export(factory(), shape, path, dynamo=dynamo)

    def seq(*layers: Callable[[Any], Any]) -> Callable[[], Any]:
        def make() -> Any:
            n = _nn()
            return n.Sequential(*(layer(n) for layer in layers))
        return make

    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier

    return [*_default_exports(seq),
        Entry("torch_mlp_softmax", "torch (TorchScript)", "MLP 30-24-12-2 + Softmax",
              mod(seq(lambda n: n.Linear(30, 24), lambda n: n.ReLU(), lambda n: n.Linear(24, 12), lambda n: n.ReLU(),
                      lambda n: n.Linear(12, 2), lambda n: n.Softmax(dim=1)), (1, 30))),
        Entry("torch_mlp_sigmoid", "torch (TorchScript)", "MLP 8-16-1 + Sigmoid",
              mod(seq(lambda n: n.Linear(8, 16), lambda n: n.Tanh(), lambda n: n.Linear(16, 1), lambda n: n.Sigmoid()),
                  (1, 8))),
        Entry("torch_unflatten_cnn", "torch (TorchScript)", "Unflatten, Conv, ReLU, AvgPool, Flatten, Linear, Softmax",
              mod(seq(lambda n: n.Unflatten(1, (1, 8, 8)), lambda n: n.Conv2d(1, 2, 3), lambda n: n.ReLU(),
                      lambda n: n.AvgPool2d(2), lambda n: n.Flatten(), lambda n: n.Linear(18, 4),
                      lambda n: n.Softmax(dim=1)), (1, 64))),
        Entry("torch_cnn_bn_maxpool", "torch (TorchScript)", "Conv, BatchNorm, ReLU, MaxPool, Dropout (eval), Linear",
              mod(seq(lambda n: n.Conv2d(1, 4, 3, padding=1), lambda n: n.BatchNorm2d(4), lambda n: n.ReLU(),
                      lambda n: n.MaxPool2d(2), lambda n: n.Dropout(0.2), lambda n: n.Flatten(),
                      lambda n: n.Linear(64, 3)), (1, 1, 8, 8))),
        Entry("torch_conv1d_timeseries", "torch (TorchScript)", "1-D conv over 32 steps, AvgPool1d, Linear",
              mod(seq(lambda n: n.Conv1d(1, 4, 5), lambda n: n.ReLU(), lambda n: n.AvgPool1d(4), lambda n: n.Flatten(),
                      lambda n: n.Linear(28, 1)), (1, 1, 32))),
        Entry("torch_attention", "torch (TorchScript)", "single-head self-attention block (4 tokens x 8)",
              mod(Attention.make, (1, 4, 8))),
        Entry("torch_transformer_layer", "torch (dynamo)", "nn.TransformerEncoderLayer(d=8, 2 heads)",
              mod(lambda: _nn().TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True),
                  (1, 4, 8), dynamo=True)),
        Entry("torch_lstm", "torch (TorchScript)", "LSTM(3->4) over 5 steps + Linear",
              mod(lambda: Recurrent.make("lstm"), (1, 5, 3))),
        Entry("torch_gru", "torch (TorchScript)", "GRU(3->4) over 5 steps + Linear", mod(lambda: Recurrent.make("gru"),
                                                                                       (1, 5, 3))),
        Entry("torch_mlp_dynamo", "torch (dynamo)", "MLP 8-16-3 + Softmax",
              mod(seq(lambda n: n.Linear(8, 16), lambda n: n.ReLU(), lambda n: n.Linear(16, 3),
                      lambda n: n.Softmax(dim=1)), (1, 8), dynamo=True)),
        Entry("torch_cnn_dynamo", "torch (dynamo)", "Conv, ReLU, AvgPool, Flatten, Linear",
              mod(seq(lambda n: n.Conv2d(1, 2, 3), lambda n: n.ReLU(), lambda n: n.AvgPool2d(2), lambda n: n.Flatten(),
                      lambda n: n.Linear(18, 3)), (1, 1, 8, 8), dynamo=True)),
        Entry("skl_mlp_classifier", "skl2onnx", "MLPClassifier(16), zipmap off",
              lambda path: _skl(MLPClassifier((16,), max_iter=300, random_state=0), 6, path,
                                {MLPClassifier: {"zipmap": False}})),
        Entry("skl_logistic_regression", "skl2onnx", "LogisticRegression, zipmap off",
              lambda path: _skl(LogisticRegression(), 6, path, {LogisticRegression: {"zipmap": False}})),
        Entry("skl_linear_regression", "skl2onnx", "LinearRegression", lambda path: _skl(LinearRegression(), 6, path)),
        Entry("hummingbird_tree", "hummingbird (GEMM trees)", "DecisionTreeClassifier(depth 3) as tensor ops",
              _hummingbird_tree),
    ]


def _default_exports(seq: Callable[..., Callable[[], Any]]) -> list[Entry]:
    """The models owners have, exported the way their tools do by default (``DEFAULT_EXPORTS``)."""
    from sklearn.decomposition import PCA
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    def torch(factory: Callable[[], Any], shape: tuple[int, ...]) -> Callable[[Path], tuple[int, ...]]:
        return lambda path: _torch_default(factory(), shape, path)

    def skl(make: Callable[[], Any], features: int = 5, classes: int = 3) -> Callable[[Path], tuple[int, ...]]:
        return lambda path: _skl_default(make(), features, path, classes)

    default, sk = "torch (default export)", "skl2onnx (default)"
    return [
        Entry("default_torch_mlp", default, "MLP 8-16-3, logits",
              torch(seq(lambda n: n.Linear(8, 16), lambda n: n.ReLU(), lambda n: n.Linear(16, 3)), (1, 8))),
        Entry("default_torch_cnn", default, "Conv, ReLU, MaxPool, Flatten, Linear",
              torch(seq(lambda n: n.Conv2d(1, 4, 3), lambda n: n.ReLU(), lambda n: n.MaxPool2d(2),
                        lambda n: n.Flatten(), lambda n: n.Linear(36, 3)), (1, 1, 8, 8))),
        Entry("default_torch_conv1d", default, "Conv1d over 16 steps, ReLU, Flatten, Linear",
              torch(seq(lambda n: n.Conv1d(2, 4, 3), lambda n: n.ReLU(), lambda n: n.Flatten(),
                        lambda n: n.Linear(56, 2)), (1, 2, 16))),
        Entry("default_torch_batchnorm_dropout", default, "Linear, BatchNorm1d, ReLU, Dropout (eval), Linear",
              torch(seq(lambda n: n.Linear(6, 12), lambda n: n.BatchNorm1d(12), lambda n: n.ReLU(),
                        lambda n: n.Dropout(0.3), lambda n: n.Linear(12, 2)), (1, 6))),
        Entry("default_torch_sigmoid_binary", default, "MLP 5-8-1 + Sigmoid (binary probability)",
              torch(seq(lambda n: n.Linear(5, 8), lambda n: n.ReLU(), lambda n: n.Linear(8, 1), lambda n: n.Sigmoid()),
                    (1, 5))),
        Entry("default_torch_residual", default, "residual block: x + Linear(ReLU(Linear(x))), then Linear",
              torch(Residual.make, (1, 8))),
        Entry("default_skl_scaler_logistic", sk, "StandardScaler + LogisticRegression (3 classes)",
              skl(lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)))),
        Entry("default_skl_linear_regression", sk, "LinearRegression", skl(LinearRegression, classes=0)),
        Entry("default_skl_ridge", sk, "Ridge", skl(Ridge, classes=0)),
        Entry("default_skl_linear_svc", sk, "LinearSVC (3 classes)", skl(LinearSVC)),
        Entry("default_skl_mlp_classifier", sk, "MLPClassifier(12), ZipMap on",
              skl(lambda: MLPClassifier((12,), max_iter=500, random_state=0))),
        Entry("default_skl_decision_tree", sk, "DecisionTreeClassifier(max_depth 4)",
              skl(lambda: DecisionTreeClassifier(max_depth=4, random_state=0))),
        Entry("default_skl_random_forest", sk, "RandomForestClassifier(8 trees, depth 3)",
              skl(lambda: RandomForestClassifier(n_estimators=8, max_depth=3, random_state=0))),
        Entry("default_skl_gradient_boosting", sk, "GradientBoostingClassifier(binary, 10 trees, depth 2)",
              skl(lambda: GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0), classes=2)),
        Entry("default_skl_pca_logistic", sk, "PCA(3) + LogisticRegression (3 classes)",
              skl(lambda: make_pipeline(PCA(n_components=3), LogisticRegression(max_iter=500)))),
    ]


#: The models owners have, exported as their tools do by default: each compiles, proves and verifies, with outputs
#: matching onnxruntime and the dry run's predicted prove time within 2x of the measured one.
DEFAULT_EXPORTS = [
    "default_torch_mlp", "default_torch_cnn", "default_torch_conv1d", "default_torch_batchnorm_dropout",
    "default_torch_sigmoid_binary", "default_torch_residual", "default_skl_scaler_logistic",
    "default_skl_linear_regression", "default_skl_ridge", "default_skl_linear_svc", "default_skl_mlp_classifier",
    "default_skl_decision_tree", "default_skl_random_forest", "default_skl_gradient_boosting",
    "default_skl_pca_logistic",
]

#: What `proofmarket compile` does with each entry: accepted, or (error code, the operator it names).
EXPECTED: dict[str, str | tuple[str, str]] = {
    **{name: "accepted" for name in DEFAULT_EXPORTS},
    "torch_mlp_softmax": "accepted",
    "torch_mlp_sigmoid": "accepted",
    "torch_unflatten_cnn": "accepted",
    "torch_cnn_bn_maxpool": "accepted",
    "torch_conv1d_timeseries": "accepted",
    "torch_attention": "accepted",
    "torch_transformer_layer": "accepted",
    "torch_lstm": "accepted",
    "torch_gru": "accepted",
    "torch_mlp_dynamo": "accepted",
    "torch_cnn_dynamo": "accepted",
    "skl_mlp_classifier": "accepted",  # its ai.onnx.ml ArrayFeatureExtractor is rewritten as a Gather
    "skl_linear_regression": "accepted",  # LinearRegressor rewritten as a Gemm
    "skl_logistic_regression": "accepted",  # LinearClassifier lowered to a Gemm, its post-transform and an ArgMax
    "hummingbird_tree": "accepted",  # its Equal written as Not(Less or Greater) (models/rewrites.py)
}


def build(out: Path) -> list[dict[str, Any]]:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for entry in entries():
        path = out / f"{entry.name}.onnx"
        try:
            shape = entry.build(path)
        except Exception as exc:  # the exporter itself failed: nothing for proofmarket to check
            rows.append({"name": entry.name, "exporter": entry.exporter, "what": entry.what, "path": str(path),
                         "export_error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"})
            continue
        rng = np.random.default_rng(7)
        size = int(np.prod(shape))
        samples = rng.random((8, size)).round(4)
        (out / f"{entry.name}.samples.json").write_text(json.dumps({"input_data": [samples.ravel().tolist()]}))
        (out / f"{entry.name}.input.json").write_text(json.dumps({"input_data": [samples[0].tolist()]}))
        rows.append({"name": entry.name, "exporter": entry.exporter, "what": entry.what, "path": str(path)})
    return rows


def check(row: dict[str, Any]) -> dict[str, Any]:
    """What `proofmarket compile` says before tuning: accepted (with the folded graph's operators) or refused."""
    from proofmarket import models
    from proofmarket.core.errors import ProofMarketError
    from proofmarket.models.external import self_contained

    path = Path(row["path"])
    if "export_error" in row:
        return {**row, "result": "export failed", "code": "export_failed", "message": row["export_error"]}
    try:
        with tempfile.TemporaryDirectory() as tmp:  # torch's default export keeps the weights beside the model
            info = models.load_model(self_contained(path, Path(tmp), models.MAX_MODEL_BYTES))
        models.parse_samples(json.loads((path.parent / f"{row['name']}.samples.json").read_text()), info)
        return {**row, "result": "accepted", "operators": sorted(info.operators), "notes": list(info.notes)}
    except ProofMarketError as exc:
        return {**row, "result": "refused", "code": exc.code, "message": exc.message,
                "operators": sorted(exc.details.get("operators") or [])}


REPORT_GRID = {"decomps": ((256, 2), (256, 3), (1024, 2)), "scales": (7, 10), "columns": (2,)}


def compile_and_prove(row: dict[str, Any], home: Path, candidates: list[Any] | None = None) -> dict[str, Any]:
    """Compile (``candidates``: this grid; None: the reduced ``REPORT_GRID``; ``"default"``: compile's own), prove
    the input, verify; with the dry run's prediction beside the measured prove time and the proved outputs' largest
    difference from onnxruntime on the same input."""
    from proofmarket import models
    from proofmarket.core.errors import ProofMarketError
    from proofmarket.core.settings import Settings
    from proofmarket.models.external import self_contained
    from proofmarket.systems.ezkl.compiler import CompileOptions
    from proofmarket.systems.ezkl.dry_run import predict_model
    from proofmarket.systems.ezkl.predict import circuit_work
    from proofmarket.systems.ezkl.profile import PrivacyProfile
    from proofmarket.systems.ezkl.srs import SrsProvider
    from proofmarket.systems.ezkl.tuning import default_candidates
    from proofmarket.systems.workspace import Workspace

    path = Path(row["path"])
    ws = Workspace(Settings(home=home, _env_file=None))  # type: ignore[call-arg]
    try:
        samples = json.loads((path.parent / f"{row['name']}.samples.json").read_text())
        profile = PrivacyProfile.parse("public")
        predicted, _ = predict_model(path, samples, profile)
        started = time.perf_counter()
        grid = None if candidates == "default" else candidates if candidates is not None else \
            default_candidates(**REPORT_GRID)  # type: ignore[arg-type]
        options = CompileOptions(profile=profile, srs=SrsProvider(ws.settings.srs_dir), candidates=grid,
                                 budget=ws.settings.budget)
        result = ws.prover.compile(path, samples, options)
        compile_s = time.perf_counter() - started
        given = json.loads((path.parent / f"{row['name']}.input.json").read_text())
        proved = ws.prove(result.model_id, given)
        ok = ws.verify(proved.bundle.to_doc()).valid
        m = result.manifest
        with tempfile.TemporaryDirectory() as tmp:
            normalized = Path(tmp) / "normalized.onnx"
            models.normalize_model(self_contained(path, Path(tmp), models.MAX_MODEL_BYTES), normalized)
            info = models.load_model(normalized)
            flat = np.asarray(given["input_data"][0], dtype=np.float64)
            want = models.run_onnx(normalized, [flat.reshape(info.inputs[0].shape)])
        got = proved.bundle.output.values
        output_error = max(float(np.max(np.abs(np.asarray(g) - np.asarray(w, dtype=np.float64).ravel())))
                           for g, w in zip(got, want, strict=True))
        picked = result.report.picked
        picked_work = circuit_work(picked.logrows or 0, picked.num_inner_cols or 2, picked.lookups or 0,
                                   picked.hash_rows or 0)
        return {**row, "logrows": m.logrows, "compile_s": round(compile_s, 1),
                "predicted_work": predicted.work, "picked_work": picked_work,
                "prove_s": round(float(proved.bundle.timings["prove_s"]), 3),
                "picked_prove_s": result.report.picked.prove_s, "predicted_logrows": predicted.logrows,
                "predicted_prove_s": round(predicted.prove_s, 3), "output_error": output_error,
                "max_abs_error": m.accuracy["max_abs_error"], "error_limit": m.accuracy["limit"], "verified": ok}
    except ProofMarketError as exc:
        return {**row, "result": "refused at compile", "code": exc.code, "message": exc.message}
    finally:
        ws.close()


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Compatibility", "",
             "Models exported the ordinary way by several exporters, built at test time from seeded weights "
             "(`python scripts/build_corpus.py OUT --report docs/compatibility.md`; `tests/models/test_corpus.py` "
             "keeps the results true). Accepted models were compiled with a reduced tuning grid "
             "(`REPORT_GRID`: decompositions 256x2, 256x3, 1024x2; scales 7 and 10; 2 columns; plus EZKL's "
             "defaults), proved once and verified on this machine (2 cores).", "",
             "The models exported by default (`DEFAULT_EXPORTS`) were compiled with compile's own search, and beside "
             "their measured prove time (the picked circuit's, as compile timed it) is the one `compile --dry-run` "
             "predicted.", "",
             "| model | exporter | architecture | operators (folded graph) | result | logrows | prove s | predicted s "
             "| max error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        error = "" if r.get("max_abs_error") is None else f"{r['max_abs_error']:.4g}"
        result = "compiles, proves, verifies" if r.get("verified") else (
            f"refused (`{r.get('code')}`): {r.get('message', '')}" if r.get("code") else r["result"])
        lines.append(f"| {r['name']} | {r['exporter']} | {r['what']} | {', '.join(r.get('operators', []))} | "
                     f"{result.replace('|', '/')} | {r.get('logrows', '')} | {r.get('picked_prove_s') or ''} | "
                     f"{r.get('predicted_prove_s', '')} | {error} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--report", type=Path, help="compile + prove the accepted models and write this table")
    args = parser.parse_args(argv)
    rows = [check(r) for r in build(args.out)]
    for r in rows:
        print(f"{r['name']}: {r['result']} {r.get('code', '')} {r.get('operators')}", file=sys.stderr)
    if args.report:
        done = []
        for r in rows:
            if r["result"] == "accepted":
                print(f"[corpus] compiling {r['name']}", file=sys.stderr, flush=True)
                r = compile_and_prove(r, args.out / "home", "default" if r["name"] in DEFAULT_EXPORTS else None)
            done.append(r)
        text = markdown(done)
        extra = args.report.read_text().split("## EZKL examples", 1) if args.report.is_file() else []
        if len(extra) == 2:
            text += "\n## EZKL examples" + extra[1]
        args.report.write_text(text)
        (args.out / "corpus.json").write_text(json.dumps(done, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
