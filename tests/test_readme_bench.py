"""The README's measured numbers are the bench files' (bench/readme.py renders them; issue 25)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from script_module import load_script

ROOT = Path(__file__).resolve().parents[1]


def _readme_module() -> ModuleType:
    return load_script(ROOT / "bench" / "readme.py", "bench_readme")


def test_the_readme_quotes_the_bench_files() -> None:
    readme = _readme_module()
    texts = {str(doc): doc.read_text() for doc in readme.DOCS}  # by path: two pages may share a name
    for name in readme.REGIONS:
        assert any(f"<!-- bench:{name} -->" in text for text in texts.values()), f"no document has bench:{name}"
    for doc, text in texts.items():
        assert readme.render(text) == text, f"{doc} differs from the bench files: run python bench/readme.py"


def test_the_chain_costs_follow_the_gas_bench(tmp_path: Path) -> None:
    readme = _readme_module()
    text = (ROOT / "docs" / "deploy-chain.md").read_text()
    for path in (ROOT / "bench").glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    gas = json.loads((tmp_path / "gas.json").read_text())
    next(r for r in gas["rows"] if r["model"] == "mlp")["gas"]["fulfill (steady)"] = 987_654
    (tmp_path / "gas.json").write_text(json.dumps(gas))
    changed = readme.render(text, tmp_path)
    assert "987,654" in changed and "987,654" not in text


def test_a_changed_bench_file_changes_the_docs(tmp_path: Path) -> None:
    readme = _readme_module()
    text = (ROOT / "docs" / "guides" / "onchain.md").read_text()
    for path in (ROOT / "bench").glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    gas = json.loads((tmp_path / "gas.json").read_text())
    gas["rows"][0]["gas"]["fulfill (steady)"] = 123_456_789
    (tmp_path / "gas.json").write_text(json.dumps(gas))
    changed = readme.render(text, tmp_path)
    assert changed != text and "123,456,789" in changed
    assert readme.render(changed, tmp_path) == changed  # rendering is idempotent


def test_the_stamp_names_date_and_commit(tmp_path: Path) -> None:
    stamp = load_script(ROOT / "bench" / "stamp.py", "bench_stamp")
    (tmp_path / "x.json").write_text(json.dumps({"rows": []}))
    (tmp_path / "x.md").write_text("# X\n\nbody\n")
    assert stamp.main(["x", "--out", str(tmp_path)]) == 0
    assert stamp.main(["x", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "x.json").read_text())
    assert set(doc["stamp"]) >= {"date", "commit", "dirty"}
    md = (tmp_path / "x.md").read_text()
    assert md.count("Measured by `make bench`") == 1 and doc["stamp"]["commit"] in md


def test_bench_outputs_do_not_make_the_tree_dirty() -> None:
    stamp = load_script(ROOT / "bench" / "stamp.py", "bench_stamp2")
    assert stamp.is_output("bench/results.json") and stamp.is_output("bench/gas.md") and stamp.is_output("README.md")
    assert not stamp.is_output("bench/run.py") and not stamp.is_output("src/proofmarket/cli/main.py")
