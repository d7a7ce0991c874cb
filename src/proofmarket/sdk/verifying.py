"""The SDK's local verification of an answer: the proof or attestation, and that it answers the request."""

from __future__ import annotations

import dataclasses
from typing import Any

from proofmarket.core.errors import UsageError
from proofmarket.sdk.attested import check_onnx_answer
from proofmarket.sdk.checks import Request, check_answer, check_srs
from proofmarket.sdk.results import InferenceResult
from proofmarket.sdk.transport import NodeSession
from proofmarket.store import LocalStore
from proofmarket.store.cid import digest_of
from proofmarket.systems.ezkl.bundle import ProofBundle
from proofmarket.systems.ezkl.srs import srs_kind
from proofmarket.systems.ezkl.verify import verify_bundle
from proofmarket.systems.port import VerifyReport
from proofmarket.systems.registry import ATTESTED_SYSTEM, PROVEN_SYSTEM, system_of


class Verifying(NodeSession):
    def verify(self, result_or_bundle: dict[str, Any] | ProofBundle | InferenceResult, *,
               model_id: str | None = None, inputs: Any = None, salt: list[int] | None = None,
               max_amount: int | None = None, reexecute: bool = False, onchain: bool = False,
               rpc_url: str | None = None, registry: str | None = None) -> VerifyReport:
        """``_verify_here`` (below), then with ``onchain`` the proof through its model's verifier on chain
        (``rpc_url``: your RPC; ``registry``: default the node's): one more check in the report."""
        report = self._verify_here(result_or_bundle, model_id=model_id, inputs=inputs, salt=salt,
                                   max_amount=max_amount, reexecute=reexecute)
        if onchain:
            if rpc_url is None:
                raise UsageError("onchain=True needs rpc_url: the chain is read with your RPC, never the node's word")
            doc = result_or_bundle.bundle if isinstance(result_or_bundle, InferenceResult) else result_or_bundle
            doc = doc.to_doc() if isinstance(doc, ProofBundle) else doc
            found = self.verify_on_chain(doc, rpc_url, registry=registry)  # type: ignore[attr-defined]
            report.checks.append(f"verifyProof on chain {found['chain_id']} by {found['verifier']}, the verifier of "
                                 f"the registry's listing of this model: true ({found['gas']:,} gas)")
        return report

    def _verify_here(self, result_or_bundle: dict[str, Any] | ProofBundle | InferenceResult, *,
                     model_id: str | None = None, inputs: Any = None, salt: list[int] | None = None,
                     max_amount: int | None = None, reexecute: bool = False) -> VerifyReport:
        """Verify locally that the answer holds and that it answers the request; raise ``VerificationFailed``
        (``AnswerMismatch``, ``DevSrsRefused``, ...) naming the first check that fails.

        Fetches the public artifacts the bundle names (checked against their CIDs) into the cache and runs
        ``verify_bundle`` (the proof, and the receipt's signatures when the bundle carries one). Then, with
        the request (from an ``InferenceResult`` of ``infer``, or given here): the bundle's model is
        ``model_id``; its proven input is ``inputs`` (a hashed input: with ``salt``, in range, opening the
        proof's commitment); for a result, its output and bundle CID are the proven ones and its payment
        and receipt are this client's (payer, amount within ``max_amount``, receipt bound to this model,
        input commitment and bundle CID). A bare bundle without ``model_id`` and ``inputs`` is checked for
        itself only. Dev-SRS models are refused unless the client was created with ``devnet=True`` (and
        the payment, if any, was on the devnet) or ``allow_dev_srs=True``. With ``reexecute``, an attested
        bundle is also re-run from the model's files (fetched by CID from the node, else from the gateways)."""
        doc = result_or_bundle.bundle if isinstance(result_or_bundle, InferenceResult) else result_or_bundle
        system = system_of(doc)
        if system not in (PROVEN_SYSTEM, ATTESTED_SYSTEM) and not isinstance(result_or_bundle, ProofBundle):
            return self._verify_registered(result_or_bundle)  # any other registered system: its own verifier
        if isinstance(result_or_bundle, dict) and system == ATTESTED_SYSTEM:
            return self._verify_attested(result_or_bundle, reexecute)
        if isinstance(result_or_bundle, InferenceResult) and system == ATTESTED_SYSTEM:
            r = result_or_bundle
            req = r.request or Request(model_id=r.model_id)
            report: VerifyReport = check_onnx_answer(
                r.bundle, r.output, model_id or req.model_id, inputs if inputs is not None else req.inputs,
                req.payer if req.paid else None, max_amount if max_amount is not None else req.max_amount, r.payment,
                LocalStore(self.cache_dir), self._fetch_artifact, self.cache_dir / "work")
            return report
        claimed: dict[str, Any] | None = None
        request = Request()
        if isinstance(result_or_bundle, InferenceResult):
            result = result_or_bundle
            request = result.request or Request(model_id=result.model_id)
            claimed = {"output": result.output, "bundle_cid": result.bundle_cid, "payment": result.payment,
                       "receipt": result.receipt}
            salt = salt if salt is not None else result.salt
            result_or_bundle = result.bundle
        request = dataclasses.replace(
            request, model_id=model_id if model_id is not None else request.model_id,
            inputs=inputs if inputs is not None else request.inputs, salt=salt,
            max_amount=max_amount if max_amount is not None else request.max_amount)
        parsed = result_or_bundle if isinstance(result_or_bundle, ProofBundle) \
            else ProofBundle.parse(result_or_bundle)
        store = LocalStore(self.cache_dir)
        model = parsed.model
        for cid in (model.id, model.settings_cid, model.vk_cid, model.srs.cid):
            self._fetch_artifact(store, cid)
        # the network of the client's own signature when it paid; else the one a bundle's receipt signs
        network = request.network if request.paid else (parsed.payment or {}).get("network")
        srs_check = check_srs(srs_kind(digest_of(model.srs.cid).hex()), model.id, devnet=self.devnet,
                              allow_dev_srs=self.allow_dev_srs, network=network)
        report = verify_bundle(parsed, store)
        report.checks.append(srs_check)
        report.checks.extend(check_answer(parsed, store, request, claimed=claimed))
        return report

    def _verify_registered(self, result_or_bundle: dict[str, Any] | InferenceResult) -> VerifyReport:
        """A bundle of another registered proof system: its manifest fetched by CID (checked), then the system's
        own verifier (``systems.registry``); for a result, also that it shows the bundle's output."""
        from proofmarket.core.errors import AnswerMismatch
        from proofmarket.systems.registry import verify_bundle

        result = result_or_bundle if isinstance(result_or_bundle, InferenceResult) else None
        bundle = result.bundle if result is not None else result_or_bundle
        assert isinstance(bundle, dict)
        store = LocalStore(self.cache_dir)
        model_id = str((bundle.get("model") or {}).get("id", ""))
        self._fetch_artifact(store, model_id)
        from proofmarket.systems.registry import parse_manifest

        for cid in getattr(parse_manifest(store.get_json(model_id)), "public_cids", []):  # a sliced model's slices
            self._fetch_artifact(store, cid)
        report: VerifyReport = verify_bundle(bundle, store)
        if report.srs_kind not in ("none", ""):  # a system proven on an SRS: a dev one only where allowed
            report.checks.append(check_srs(report.srs_kind, model_id, devnet=self.devnet,
                                           allow_dev_srs=self.allow_dev_srs,
                                           network=(bundle.get("payment") or {}).get("network")))
        if result is not None and result.output != (bundle.get("output") or {}).get("values"):
            raise AnswerMismatch("the answer's output is not the one its bundle backs")
        return report

    def _verify_attested(self, bundle: dict[str, Any], reexecute: bool = False) -> VerifyReport:
        """An attested bundle: signature, hashes and bindings against the manifest fetched by CID (and with
        ``reexecute``, the weights fetched by CID and one prefill pass)."""
        from proofmarket.systems import verify_bundle_any
        from proofmarket.systems.attested.documents import AttestedManifest

        store = LocalStore(self.cache_dir)
        model_id = str((bundle.get("model") or {}).get("id", ""))
        self._fetch_artifact(store, model_id)
        if reexecute:
            for ref in AttestedManifest.model_validate(store.get_json(model_id)).files.values():
                self._fetch_artifact(store, ref.cid)
        report: VerifyReport = verify_bundle_any(bundle, store, reexecute=reexecute, work_dir=self.cache_dir / "work")
        return report
