"""Fast unit tests of the zk package's pure parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from proofmarket.core.errors import UsageError
from proofmarket.samples import sample_path
from proofmarket.systems.ezkl.felts import felt_to_uint, keccak_packed, uint_hex, uint_to_felt
from proofmarket.systems.ezkl.profile import PrivacyProfile
from proofmarket.systems.ezkl.salt import SALTED_INPUT, new_salt, salt_model
from proofmarket.systems.ezkl.tuning import AccuracyBound


@pytest.mark.parametrize("text, inp, params", [
    ("public", "public", "fixed"), ("private-input", "hashed", "fixed"), ("private", "hashed", "hashed"),
    ("input=hashed,params=fixed", "hashed", "fixed"), ("params=hashed", "public", "hashed"),
])
def test_profiles_parse(text: str, inp: str, params: str) -> None:
    p = PrivacyProfile.parse(text)
    assert (p.input, p.params, p.output) == (inp, params, "public")


@pytest.mark.parametrize("text", ["secret", "input=private", "params=public", "colour=blue"])
def test_bad_profiles_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        PrivacyProfile.parse(text)


def test_felt_round_trip_and_byte_order() -> None:
    assert felt_to_uint("9634" + "00" * 30) == 0x3496
    assert uint_to_felt(0x3496) == "9634" + "00" * 30
    assert uint_hex(1) == "0x" + "00" * 31 + "01"


def test_keccak_packed_matches_abi_encode_packed() -> None:
    from eth_hash.auto import keccak

    assert keccak_packed([1, 2]) == "0x" + keccak((1).to_bytes(32, "big") + (2).to_bytes(32, "big")).hex()


def test_salted_model_computes_the_same_output() -> None:
    model = onnx.load(str(sample_path("mlp")))
    salted = salt_model(model)
    onnx.checker.check_model(salted)
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    plain = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    flat = np.concatenate([x.ravel(), np.array(new_salt(), dtype=np.float32)]).reshape(1, -1)
    got = ort.InferenceSession(salted.SerializeToString()).run(None, {SALTED_INPUT: flat})[0]
    np.testing.assert_allclose(got, plain, rtol=0, atol=0)


def test_salts_are_random() -> None:
    assert new_salt() != new_salt()


def test_accuracy_bound_is_share_of_output_range() -> None:
    bound = AccuracyBound(relative=0.01)
    assert bound.limit([np.array([-2.0, 3.0]), np.array([1.0])]) == pytest.approx(0.05)


def test_one_salt_check_for_the_prover_and_the_commitment() -> None:
    from proofmarket.systems.ezkl.profile import SALT_BITS, SALT_ELEMENTS
    from proofmarket.systems.ezkl.salt import check_salt

    good = [1] * SALT_ELEMENTS
    assert check_salt(SALT_ELEMENTS, good, required=True) == good
    drawn = check_salt(SALT_ELEMENTS, None, required=False)  # the prover draws one
    assert drawn is not None and len(drawn) == SALT_ELEMENTS
    assert check_salt(0, None, required=True) is None  # a public input takes none
    refused: list[tuple[int, list[int] | None, bool]] = [
        (SALT_ELEMENTS, None, True),  # a commitment needs the consumer's salt
        (0, good, False),  # a public input takes none
        (SALT_ELEMENTS, good[:-1], False),  # wrong length
        (SALT_ELEMENTS, [*good[:-1], 1 << SALT_BITS], False),  # out of range: quantised differently
        (SALT_ELEMENTS, [*good[:-1], -1], False),
        (SALT_ELEMENTS, [*good[:-1], 1.5], False),  # type: ignore[list-item]
        (SALT_ELEMENTS, [*good[:-1], True], False),
    ]
    for elements, salt, required in refused:
        with pytest.raises(UsageError):
            check_salt(elements, salt, required=required)


def test_accuracy_bound_takes_boolean_outputs() -> None:
    # EZKL's own examples include models whose outputs are booleans (Less, Equal): the bound is their range, 1
    assert AccuracyBound().limit([np.array([True, False]), np.array([[False]])]) == pytest.approx(0.01)


def test_an_unforeseen_failure_of_compile_is_a_refusal_with_a_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from proofmarket.core.errors import CircuitCompileError
    from proofmarket.systems.ezkl import compiler

    def broken(*_args: object, **_kwargs: object) -> object:
        raise TypeError("numpy boolean subtract, the `-` operator, is not supported")

    monkeypatch.setattr(compiler, "_compile", broken)
    with pytest.raises(CircuitCompileError, match="TypeError: numpy boolean subtract") as caught:
        compiler.compile_model(Path("m.onnx"), {}, None, None)  # type: ignore[arg-type]
    assert caught.value.code == "circuit_compile"

    def refused(*_args: object, **_kwargs: object) -> object:
        raise UsageError("give at least one sample")

    monkeypatch.setattr(compiler, "_compile", refused)
    with pytest.raises(UsageError):  # the named refusals pass through unchanged
        compiler.compile_model(Path("m.onnx"), {}, None, None)  # type: ignore[arg-type]


def test_an_unknown_search_is_refused_before_the_model_is_read() -> None:
    from proofmarket.samples import sample_path
    from proofmarket.systems.ezkl.compiler import CompileOptions, compile_model
    from proofmarket.systems.ezkl.profile import PrivacyProfile

    options = CompileOptions(profile=PrivacyProfile(), srs=None, search="fast")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="--search is one of quick, thorough, not 'fast'"):
        compile_model(sample_path("mlp"), {}, None, options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("check", "oversize_ok", "tried"), [
    ("not deployable: its verifier is 38,469 bytes, over EIP-170's 24,576", True, False),
    ("not deployable: its verifier is 38,469 bytes, over EIP-170's 24,576", False, True),
    ("refused: the verifier rejected the valid proof", True, True),
    ("accepted (gas 412,000)", False, False),
])
def test_a_slice_keeps_an_oversize_verifier_but_not_a_refusing_one(check: str, oversize_ok: bool, tried: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A quick search's pick whose verifier is over the code size limit is kept where a SharedVerifier clone serves it
    (a slice): another candidate costs a key setup and a proof. One EZKL's verifier refuses is always replaced."""
    from types import SimpleNamespace

    from proofmarket.systems.ezkl import on_chain

    timed: list[str] = []
    picked = SimpleNamespace(label="b1024x2-s10-c2", evm_check=check, status="ok", timed=True)
    other = SimpleNamespace(label="b1024x2-s10-c1", evm_check=None, status="ok", timed=False)
    report = SimpleNamespace(picked=picked, candidates=[picked, other])
    monkeypatch.setattr(on_chain, "covering", lambda points, work, cands, keep: cands)
    monkeypatch.setattr(on_chain, "cost_rank", lambda c: 0)
    monkeypatch.setattr(on_chain, "time_proof", lambda job, cand, repeats: timed.append(cand.label))
    monkeypatch.setattr(on_chain, "first_on_chain", lambda *a, **k: (other, "built-c1"))
    job = SimpleNamespace(quick=True, domain_points=[], workdir=None, objective=None, srs=None)
    kept: object = on_chain.fall_back(job, report, {picked.label: "built-c2"}, None, None,  # type: ignore[arg-type, dict-item]
                                      lambda _: None, oversize_ok=oversize_ok)
    assert timed == (["b1024x2-s10-c1"] if tried else [])
    assert kept == ((other, "built-c1") if tried else (picked, "built-c2"))


@pytest.mark.parametrize("clone_refuses", [True, False])
def test_an_oversize_verifier_is_kept_only_where_its_shared_verifier_takes_its_proof(
        clone_refuses: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice's best candidate whose own verifier is over EIP-170's size is kept only when a SharedVerifier clone
    accepts its proof: a transformer encoder's slice (4 columns) had a clone revert on its valid proof, and its
    sliced model could not be listed; the next candidate, whose own verifier deploys and accepts, is picked."""
    from types import SimpleNamespace

    from proofmarket.systems.ezkl import on_chain
    from proofmarket.systems.ezkl.tuning import Objective

    def cand(label: str) -> SimpleNamespace:
        return SimpleNamespace(label=label, evm_check=None, status="ok", timed=True, keys=("vk", "pk"),
                               settings_path="s", proof_path="p", logrows=17, proof_bytes=9_952, prove_s=30.0,
                               verify_gas=None, evm_gas=None, max_abs_error=0.01, argmax_match=None, setup_s=1.0)

    wide, narrow = cand("b1024x2-s7-c4"), cand("b1024x2-s7-c1")
    report = SimpleNamespace(picked=None, candidates=[wide, narrow])
    monkeypatch.setattr(on_chain, "ranked", lambda cands, objective: cands)  # the wide one is the best
    sizes = {"b1024x2-s7-c4": 41_621, "b1024x2-s7-c1": 20_000 if clone_refuses else 30_000}
    monkeypatch.setattr(on_chain.solidity, "build_verifier", lambda work, *_a, **_k: SimpleNamespace(
        deployable=sizes[work.name.removeprefix("verifier-")] <= 24_576, compiled=SimpleNamespace(
            deployed_size=sizes[work.name.removeprefix("verifier-")], bytecode="0x")))
    monkeypatch.setattr(on_chain.ezkl_calls, "encode_evm_calldata", lambda *_a: b"")
    evm = SimpleNamespace(check=lambda *_a: SimpleNamespace(accepted=True, gas=1_129_505, note=""))
    srs = SimpleNamespace(get=lambda _logrows: SimpleNamespace(path="srs"))
    asked: list[str] = []

    def refusal(c: SimpleNamespace) -> str | None:
        asked.append(c.label)
        return "refuses the self-check proof (verifyProof reverted (ContractCustomError))" if clone_refuses else None

    picked, _ = on_chain.first_on_chain(report, Objective(), srs, Path("/nowhere"), evm,  # type: ignore[arg-type]
                                        lambda _: None, {}, True, refusal)
    assert asked == (["b1024x2-s7-c4"] if clone_refuses else ["b1024x2-s7-c4", "b1024x2-s7-c1"])  # the oversize
    assert picked is (narrow if clone_refuses else wide)
    assert wide.evm_check.startswith("refused" if clone_refuses else "not deployable")


@pytest.mark.parametrize("oversize_ok", [True, False])
def test_an_oversize_pick_is_said_to_be_served_by_a_shared_verifier_only_where_one_serves_it(
        oversize_ok: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """When every timed candidate's own verifier is only over the code size limit, a slice's compile says a
    SharedVerifier clone serves its pick on chain; a model's compile says to sell it off chain only."""
    from types import SimpleNamespace

    from proofmarket.systems.ezkl import on_chain
    from proofmarket.systems.ezkl.tuning import Objective

    cand = SimpleNamespace(label="b1024x2-s10-c2", evm_check="not deployable: its verifier is 38,469 bytes, over "
                           "EIP-170's 24,576", status="ok", timed=True, keys=("vk", "pk"), settings_path="s",
                           proof_path="p", logrows=18, proof_bytes=9_952, prove_s=190.8, verify_gas=None,
                           max_abs_error=0.01, argmax_match=None, setup_s=1.0)
    report = SimpleNamespace(picked=None, candidates=[cand])
    monkeypatch.setattr(on_chain, "ranked", lambda cands, objective: cands)
    said: list[str] = []
    picked = on_chain.first_on_chain(report, Objective(), None, None, None, said.append,  # type: ignore[arg-type]
                                     {cand.label: "built"}, oversize_ok)  # type: ignore[dict-item]
    assert picked == (cand, "built") and report.picked is cand
    assert ("SharedVerifier clone serves it" in said[-1]) is oversize_ok
    assert ("do not register it for escrow" in said[-1]) is not oversize_ok


def test_a_shared_verifiers_custom_error_is_named_by_its_selector() -> None:
    """The selectors come from the error signatures of contracts/SharedVerifier.sol, hashed here."""
    from eth_utils.crypto import keccak
    from web3.exceptions import ContractCustomError, ContractLogicError

    from proofmarket.systems.ezkl.evm_check import _reason

    source = Path("contracts/SharedVerifier.sol").read_text()
    for name in ("VerifierOutOfGas", "OnlyClone", "OnlyImplementation", "NoCode"):
        declared = next(line.split("error ", 1)[1].rstrip(";").strip() for line in source.splitlines()
                        if line.strip().startswith(f"error {name}("))
        params = declared[declared.index("(") + 1:-1]
        signature = f"{name}({','.join(p.split()[0] for p in params.split(',') if p.strip())})"  # types only
        selector = "0x" + keccak(text=signature)[:4].hex()
        assert _reason(ContractCustomError(selector, data=selector)).startswith(name)
    assert _reason(ContractLogicError("execution reverted")) == "ContractLogicError"
