"""The one exception tree of proofmarket.

Every error carries a stable ``code`` (used by the API's JSON error body and by scripts reading
``--json`` output), an HTTP status for the API, and a CLI exit code. Foreign exceptions (EZKL,
onnxruntime, web3, filesystem) are translated at the adapter edge into one of these.

    ProofMarketError                      code              http  exit
    ├── UsageError                        bad_request        400   2
    │   ├── JsonTooDeep                   json_too_deep      400   2
    │   └── JsonTooLarge                  json_too_large     413   2
    ├── ModelError                        model_error        422   2
    │   ├── InvalidModel                  invalid_model      422   2
    │   ├── ModelTooLarge                 model_too_large    413   2
    │   ├── UnsupportedOperator           unsupported_operator 422 2
    │   ├── TensorTooLarge                tensor_too_large   422   2
    │   └── UnknownModel                  unknown_model      404   2
    ├── InputError                        invalid_input      422   2
    │   ├── InputTooLarge                 input_too_large    413   2
    │   ├── InputShapeError               input_shape        422   2
    │   └── NonFiniteInput                input_not_finite   422   2
    ├── StoreError                        store_error        500   2
    │   ├── ArtifactNotFound              artifact_not_found 404   2
    │   ├── ArtifactCorrupt               artifact_corrupt   500   2
    │   └── InvalidCID                    invalid_cid        400   2
    ├── ProvingError                      proving_failed     500   3
    │   ├── CircuitCompileError           circuit_compile    422   3
    │   ├── AccuracyNotMet                accuracy_not_met   422   3
    │   ├── SRSError                      srs_error          500   3
    │   ├── WitnessError                  witness_failed     422   3
    │   ├── ProofTimeout                  proof_timeout      504   3
    │   ├── CompileOutOfMemory            compile_out_of_memory 422 3
    │   └── EzklVersionMismatch           ezkl_version_mismatch 409 3
    ├── QueueUnavailable                  queue_unavailable  503   4
    ├── VerificationFailed                proof_invalid      422   1
    │   ├── BundleError                   bundle_invalid     422   1
    │   ├── AnswerMismatch                answer_mismatch    422   1
    │   ├── DevSrsRefused                 dev_srs_refused    422   1
    │   ├── SettlementMismatch            settlement_mismatch 422  1
    │   └── RegistryMismatch              registry_mismatch  409   1
    ├── ChainError                        chain_error        502   4
    │   ├── ContractReverted              contract_reverted  409   4
    │   └── RPCUnavailable                rpc_unavailable    503   4
    └── PaymentError                      payment_error      402   5
        ├── PaymentRequired               payment_required   402   5
        ├── PaymentRejected               payment_rejected   402   5
        │   ├── PaymentMalformed          payment_malformed  402   5
        │   ├── PaymentMismatch           payment_mismatch   402   5
        │   ├── PaymentAmountMismatch     payment_amount_mismatch 402 5
        │   ├── PaymentExpired            payment_expired    402   5
        │   │   └── PaymentWindowTooShort payment_window_too_short 402 5
        │   ├── PaymentNotYetValid        payment_not_yet_valid 402 5
        │   ├── PaymentSignatureInvalid   payment_signature_invalid 402 5
        │   ├── PaymentInsufficientFunds  payment_insufficient_funds 402 5
        │   └── PaymentReplayed           payment_replayed   409   5
        ├── PaymentSettlementFailed       payment_settlement_failed 402 5
        ├── PaymentSettlementPending      payment_settlement_pending 402 5
        └── FacilitatorUnavailable        facilitator_unavailable 503 5
"""

from __future__ import annotations


class ProofMarketError(Exception):
    """Root of every error proofmarket raises on purpose."""

    code = "internal_error"
    http_status = 500
    exit_code = 2

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "details": self.details}


class UsageError(ProofMarketError):
    code, http_status, exit_code = "bad_request", 400, 2


class JsonTooDeep(UsageError):
    """A JSON document nests arrays or objects deeper than proofmarket parses (``proofmarket.core.jsonlimits``)."""

    code = "json_too_deep"


class JsonTooLarge(UsageError):
    code, http_status = "json_too_large", 413


# --- models -------------------------------------------------------------------------------------
class ModelError(ProofMarketError):
    code, http_status, exit_code = "model_error", 422, 2


class InvalidModel(ModelError):
    code = "invalid_model"


class ModelTooLarge(ModelError):
    code, http_status = "model_too_large", 413


class UnsupportedOperator(ModelError):
    code = "unsupported_operator"


class ModelOverBudget(ModelError):
    """The predicted circuit (logrows, prove time or memory) exceeds the node's proving budget."""

    code = "model_over_budget"


class TensorTooLarge(ModelError):
    """A tensor of the model (weights, input, output or an intermediate) has more elements than the node takes."""

    code = "tensor_too_large"


class UnknownModel(ModelError):
    code, http_status = "unknown_model", 404


class ModelFilesMissing(ModelError):
    """A model directory (attested mode) lacks a file it needs: config, weights or tokenizer."""

    code = "model_files_missing"


class NotCausalLM(ModelError):
    """Attested text generation needs a causal language model; this directory holds another kind."""

    code = "not_causal_lm"


class WrongMode(ModelError):
    """The call does not fit the model's mode: ``infer`` on a generation model, ``generate`` on a proven one."""

    code, http_status = "wrong_mode", 409


# --- inputs -------------------------------------------------------------------------------------
class InputError(ProofMarketError):
    code, http_status, exit_code = "invalid_input", 422, 2


class InputTooLarge(InputError):
    code, http_status = "input_too_large", 413


class InputShapeError(InputError):
    code = "input_shape"


class SampleCountError(InputShapeError):
    """A sample file's values do not split into whole samples of the model's input size."""

    code = "sample_count_not_whole"


class NonFiniteInput(InputError):
    code = "input_not_finite"


class PromptTooLong(InputError):
    """The prompt and the tokens asked for do not fit the model's context length."""

    code = "prompt_too_long"


class MaxTokensOverCap(InputError):
    """``max_tokens`` is above the model's cap (the most a call pays for)."""

    code = "max_tokens_over_cap"


# --- store --------------------------------------------------------------------------------------
class StoreError(ProofMarketError):
    code, http_status, exit_code = "store_error", 500, 2


class ArtifactNotFound(StoreError):
    code, http_status = "artifact_not_found", 404


class ArtifactCorrupt(StoreError):
    """A stored artifact's bytes no longer hash to its CID: it is not used."""

    code = "artifact_corrupt"


class InvalidCID(StoreError):
    code, http_status = "invalid_cid", 400


# --- proving ------------------------------------------------------------------------------------
class ProvingError(ProofMarketError):
    code, http_status, exit_code = "proving_failed", 500, 3


class CircuitCompileError(ProvingError):
    code, http_status = "circuit_compile", 422


class AccuracyNotMet(ProvingError):
    code, http_status = "accuracy_not_met", 422


class SRSError(ProvingError):
    code = "srs_error"


class WitnessError(ProvingError):
    code, http_status = "witness_failed", 422


class ProofTimeout(ProvingError):
    code, http_status = "proof_timeout", 504


class CompileOutOfMemory(ProvingError):
    """The compile of an uploaded model needed more memory than the node's compile limit."""

    code, http_status = "compile_out_of_memory", 422


class EzklVersionMismatch(ProvingError):
    """The prover's EZKL is not the version the model was compiled with: its keys could give a bad proof, so the
    job is refused (nothing proved, nothing charged)."""

    code, http_status = "ezkl_version_mismatch", 409


class QueueUnavailable(ProofMarketError):
    """The job queue's broker (Redis, for PROOFMARKET_QUEUE=celery) cannot be reached."""

    code, http_status, exit_code = "queue_unavailable", 503, 4


# --- nodes (the SDK's view) ---------------------------------------------------------------------
class NodeUnavailable(ProofMarketError):
    """The SDK or the CLI could not reach a proofmarket node (refused, unresolvable, timed out)."""

    code, http_status, exit_code = "node_unavailable", 503, 4


# --- verification -------------------------------------------------------------------------------
class VerificationFailed(ProofMarketError):
    """The proof (or the bundle around it) does not hold. CLI exit code 1."""

    code, http_status, exit_code = "proof_invalid", 422, 1


class BundleError(VerificationFailed):
    code = "bundle_invalid"


class AnswerMismatch(VerificationFailed):
    """The proof holds but does not answer the request the client made (model, input, salt, output or payment)."""

    code = "answer_mismatch"


class AttestationMismatch(VerificationFailed):
    """A re-execution of an attested result differs from what the node committed to (a chunk or a token)."""

    code = "attestation_mismatch"


class DevSrsRefused(VerificationFailed):
    """The model's SRS is not a pinned ceremony file: its proofs can be forged by whoever made it."""

    code = "dev_srs_refused"


class SettlementMismatch(VerificationFailed):
    """A node reported a settlement the chain does not show."""

    code = "settlement_mismatch"


class RegistryMismatch(VerificationFailed):
    """The on-chain registry entry for a model id is not the model we know (another verifier, vk, ONNX,
    layout, owner or a price above the cap): nothing is proved or escrowed for it."""

    code, http_status = "registry_mismatch", 409


# --- chain --------------------------------------------------------------------------------------
class ChainError(ProofMarketError):
    code, http_status, exit_code = "chain_error", 502, 4


class ContractReverted(ChainError):
    code, http_status = "contract_reverted", 409


class RPCUnavailable(ChainError):
    code, http_status = "rpc_unavailable", 503


# --- payments -----------------------------------------------------------------------------------
class PaymentError(ProofMarketError):
    code, http_status, exit_code = "payment_error", 402, 5


class PaymentRequired(PaymentError):
    code = "payment_required"


class PaymentRejected(PaymentError):
    code = "payment_rejected"


class PaymentMalformed(PaymentRejected):
    """The PAYMENT-SIGNATURE header is not a decodable x402 v2 exact/EIP-3009 payment."""

    code = "payment_malformed"


class PaymentMismatch(PaymentRejected):
    """The payment names another scheme, network, asset or payee than the ones required."""

    code = "payment_mismatch"


class PaymentAmountMismatch(PaymentRejected):
    code = "payment_amount_mismatch"


class PaymentExpired(PaymentRejected):
    """The authorization's validBefore has passed (or is too close to settle safely)."""

    code = "payment_expired"


class PaymentWindowTooShort(PaymentExpired):
    """The authorization expires before the node could queue, prove and settle the call."""

    code = "payment_window_too_short"


class PaymentNotYetValid(PaymentRejected):
    code = "payment_not_yet_valid"


class PaymentSignatureInvalid(PaymentRejected):
    code = "payment_signature_invalid"


class PaymentInsufficientFunds(PaymentRejected):
    code = "payment_insufficient_funds"


class PaymentReplayed(PaymentRejected):
    """The authorization's nonce was already used on chain or already accepted by this node."""

    code, http_status = "payment_replayed", 409


class PaymentSettlementFailed(PaymentError):
    code = "payment_settlement_failed"


class PaymentSettlementPending(PaymentError):
    """The settlement was sent (or may have been) but is not confirmed yet: the job keeps its hold and settles
    when the authorization's nonce is used on chain, or fails when it expires unused. The job runner catches it
    (the job shows ``settling``); it is not an answer of the API."""

    code = "payment_settlement_pending"


class FacilitatorUnavailable(PaymentError):
    """The x402 facilitator (remote, or the in-process one's RPC) could not be reached or set up."""

    code, http_status = "facilitator_unavailable", 503
