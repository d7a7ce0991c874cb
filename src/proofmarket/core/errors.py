"""The one exception tree of proofmarket, and the registry of its codes.

Every error carries a stable ``code`` (used by the API's JSON error body, by scripts reading ``--json`` output and
by a job's stored failure), an HTTP status for the API, a CLI exit code and the HTTP ``headers`` its answer sends
(``WWW-Authenticate`` on a 401, x402 ``PAYMENT-REQUIRED`` on a 402: declared by the class or set on the instance).
A class declares them in its header, ``class UnknownJob(UsageError, code="unknown_job", http_status=404)``, and
inherits what it does not declare. Each code names one class (a second class taking a code is a ``TypeError`` when
it is defined); ``from_code`` is the one way to rebuild an error in another process (a job's failure, a node's
answer). Foreign exceptions (EZKL, onnxruntime, web3, filesystem) are translated at the adapter edge into the tree.

The branches and their CLI exit codes: ``VerificationFailed`` 1 (the proof or its bundle does not hold);
``UsageError``, ``ModelError``, ``InputError`` and ``StoreError`` 2 (the request, model, input or artifact is
refused); ``ProvingError`` 3; ``QueueUnavailable``, ``NodeUnavailable`` and ``ChainError`` 4 (a service cannot be
reached); ``PaymentError`` 5. ``InternalError`` (500) is a bug: the API logs it and does not send its details.
``error_codes()`` maps every code to its class (with its ``http_status``, ``exit_code`` and ``headers``).
"""

from __future__ import annotations

from proofmarket.core.error_base import NO_HEADERS as NO_HEADERS
from proofmarket.core.error_base import InternalError as InternalError
from proofmarket.core.error_base import ProofMarketError as ProofMarketError
from proofmarket.core.error_base import UsageError as UsageError
from proofmarket.core.error_base import error_class as error_class
from proofmarket.core.error_base import error_codes as error_codes
from proofmarket.core.error_base import from_code as from_code

# the payment branch (its own module for size): every class of it is importable from here
from proofmarket.core.payment_errors import *  # noqa: F403


# --- usage (UsageError itself is error_base's: the payment branch derives from it too) -----------
class JsonTooDeep(UsageError, code="json_too_deep"):
    """A JSON document nests arrays or objects deeper than proofmarket parses (``proofmarket.core.jsonlimits``)."""


class JsonTooLarge(UsageError, code="json_too_large", http_status=413):
    """A JSON document (a request body, a bundle, a samples file) is over the size the node takes; send a
    smaller one."""


class Unauthorized(UsageError, code="unauthorized", http_status=401, headers={"WWW-Authenticate": "Bearer"}):
    """The request is not signed, or not by whom it must be (an admin token, a SIWE message, an API key); sign
    it as the message says."""


class Forbidden(UsageError, code="forbidden", http_status=403):
    """The signer may not do this (e.g. set a model's free quota without owning the model)."""


class ApiKeyInvalid(Unauthorized, code="api_key_invalid"):
    """The API key is unknown, revoked or expired."""


class ApiKeyOutOfScope(UsageError, code="api_key_out_of_scope", http_status=403):
    """The API key may not call this model (its scope names others)."""


class BodyTooLarge(UsageError, code="body_too_large", http_status=413):
    """The request body is over PROOFMARKET_MAX_REQUEST_BYTES (uploads: PROOFMARKET_MAX_UPLOAD_BYTES); send
    less."""


class RouteNotFound(UsageError, code="not_found", http_status=404):
    """No route or resource answers at this path."""


class MethodNotAllowed(UsageError, code="method_not_allowed", http_status=405):
    """The route exists but not with this HTTP method."""


class RequestInvalid(UsageError, code="invalid_request", http_status=422):
    """The request does not match the OpenAPI schema."""


class UnknownJob(UsageError, code="unknown_job", http_status=404):
    """There is no call or compile job with this id on this node (or its token does not open it)."""


class IdempotencyConflict(UsageError, code="idempotency_conflict", http_status=409):
    """The Idempotency-Key was already used for a different request."""


class DuplicateJob(UsageError, code="duplicate_job", http_status=409):
    """A unique job column (idempotency key, payment nonce) is taken."""


class UnknownRequest(UsageError, code="unknown_request", http_status=404):
    """There is no escrow or court request with this id that this node follows."""


class RequestClosed(UsageError, code="request_closed", http_status=409):
    """The escrow or court request is already fulfilled, refunded or expired: nothing more can be sent to it."""


class UseCourt(UsageError, code="use_court", http_status=409):
    """An attested request escrowed on the InferenceMarket while the deployment has an AttestationCourt: attested
    results are paid only after a challenge window, so they are answered on the court, not here."""


class EscrowUnavailable(UsageError, code="escrow_unavailable", http_status=404):
    """This node follows no escrow market: there are no escrow requests to show (not a server fault)."""


class CourtUnavailable(UsageError, code="court_unavailable", http_status=404):
    """This node follows no AttestationCourt (no court deployed, or the watcher is off)."""


class MarketUnavailable(UsageError, code="market_unavailable", http_status=404):
    """This node sells on no on-chain market (no earnings to show)."""


class ModelInactive(UsageError, code="model_inactive", http_status=409):
    """The model's registry listing is deactivated by its owner: it is not sold."""


# --- models -------------------------------------------------------------------------------------
class ModelPending(ModelInactive, code="model_pending"):
    """The listing waits for the operator's review: not sold yet."""


class ModelRejected(ModelInactive, code="model_rejected"):
    """The operator rejected the listing (its reason is in the message): not sold."""


class ModelOwnedByOther(UsageError, code="model_exists", http_status=409):
    """This model id is listed here by another owner: an upload of the same file cannot take it over."""


class ListingSignatureInvalid(Unauthorized, code="listing_signature_invalid"):
    """The listing request's EIP-712 signature is missing, malformed, expired, or not the owner's."""


class ListingReplayed(UsageError, code="listing_replayed", http_status=409):
    """This signed listing request was used already: sign a new one (a new nonce)."""


class ListingNotAllowed(Forbidden, code="listing_not_allowed"):
    """The node's listing policy does not take listings from this owner."""


class ListingBusy(UsageError, code="listing_busy", http_status=409):
    """Another upload's admission held the node's listing check for too long: try again."""


class OwnerQuotaExceeded(Forbidden, code="owner_quota_exceeded"):
    """The owner is at one of the node's per-owner quotas (models, bytes, compile seconds a day)."""


class InvalidCatalogEntry(UsageError, code="invalid_metadata", http_status=422):
    """The listing's catalogue metadata (description, task, tags, license, ...) is not valid."""


class InvalidCursor(UsageError, code="invalid_cursor"):
    """The catalogue cursor is malformed or belongs to another query."""


class InvalidVersion(UsageError, code="invalid_supersedes", http_status=422):
    """A listing may supersede only a listing of the same owner on this node."""


class ModelError(ProofMarketError, code="model_error", http_status=422, exit_code=2):
    """The model is refused; a more specific code says why."""


class InvalidModel(ModelError, code="invalid_model"):
    """The file is not a model this node can check: not ONNX, fails the ONNX checker, an opset outside 9-23,
    shapes that stay dynamic, non-numeric inputs; the message names the part."""


class ModelTooLarge(ModelError, code="model_too_large", http_status=413):
    """The model file is over the size limit (100 MiB by default, PROOFMARKET_MAX_MODEL_BYTES)."""


class UnsupportedOperator(ModelError, code="unsupported_operator"):
    """The model uses an operator no circuit proves here; the message names it and its node. Replace the layer,
    or for scikit-learn export an estimator that is lowered (docs/byom.md)."""


class TreeEnsembleTooLarge(UnsupportedOperator, code="tree_ensemble_too_large"):
    """A tree ensemble over the stated limits (depth, trees, leaves) of its matrix form."""


class ModelOverBudget(ModelError, code="model_over_budget"):
    """The predicted circuit (logrows, prove time or memory) exceeds the node's proving budget."""


class TensorTooLarge(ModelError, code="tensor_too_large"):
    """A tensor of the model (weights, input, output or an intermediate) has more elements than the node takes."""


class UnknownModel(ModelError, code="unknown_model", http_status=404):
    """This node serves no model with this id (or it is not compiled in this home)."""


class ModelFilesMissing(ModelError, code="model_files_missing"):
    """A model directory (attested mode) lacks a file it needs: config, weights or tokenizer."""


class NotCausalLM(ModelError, code="not_causal_lm"):
    """Attested text generation needs a causal language model; this directory holds another kind."""


class WrongMode(ModelError, code="wrong_mode", http_status=409):
    """The call does not fit the model's mode: ``infer`` on a generation model, ``generate`` on a proven one."""


# --- inputs -------------------------------------------------------------------------------------
class InputError(ProofMarketError, code="invalid_input", http_status=422, exit_code=2):
    """The input does not fit the model; a more specific code says how."""


class InputTooLarge(InputError, code="input_too_large", http_status=413):
    """The input has more elements than the model takes or the node accepts."""


class InputShapeError(InputError, code="input_shape"):
    """The input's shape or count does not match the model's inputs; the message gives the expected shape."""


class CourtBundleTooLarge(InputError, code="court_bundle_too_large", http_status=422):
    """A court request's bundle is over what the court's ``publish`` takes: not committed (an honest node must be
    able to answer an availability challenge), the consumer takes its money back."""


class SamplesTooLarge(InputError, code="samples_too_large", http_status=413):
    """An uploaded sample file is over a size cap: its bytes, an archive member's unpacked size, or its values."""


class SampleCountError(InputShapeError, code="sample_count_not_whole"):
    """A sample file's values do not split into whole samples of the model's input size."""


class NonFiniteInput(InputError, code="input_not_finite"):
    """The input holds NaN or an infinity; a circuit proves finite numbers only."""


class PromptTooLong(InputError, code="prompt_too_long"):
    """The prompt and the tokens asked for do not fit the model's context length."""


class MaxTokensOverCap(InputError, code="max_tokens_over_cap"):
    """``max_tokens`` is above the model's cap (the most a call pays for)."""


class InputOutOfRange(InputError, code="input_out_of_range"):
    """A value outside the model's input domain (what its circuit is calibrated for); refused before payment."""


class InputMismatch(InputError, code="input_mismatch", http_status=422):
    """The posted input (and salt) does not open the request's on-chain input commitment."""


# --- store --------------------------------------------------------------------------------------
class StoreError(ProofMarketError, code="store_error", http_status=500, exit_code=2):
    """The artifact store refused or failed an operation; the message says which."""


class ArtifactNotFound(StoreError, code="artifact_not_found", http_status=404):
    """No artifact with this CID is in the store (import it with 'proofmarket import', or verify with --car)."""


class ArtifactCorrupt(StoreError, code="artifact_corrupt"):
    """A stored artifact's bytes no longer hash to its CID: it is not used."""


class InvalidCID(StoreError, code="invalid_cid", http_status=400):
    """The text is not a CID (CIDv1, base32) of this store's codecs."""


class DatabaseError(StoreError, code="database_error"):
    """The database cannot be opened, migrated or written."""


class DiscoveryUnavailable(UsageError, code="discovery_unavailable", http_status=404):
    """The node lists no other nodes: no market with ERC-8004 registries is deployed where it sells (use
    'proofmarket discover' with your own RPC)."""


class HomeNotWritable(StoreError, code="home_not_writable"):
    """The data folder (PROOFMARKET_HOME) or a folder in it cannot be written by the user running the command: give
    that user the folder, or set PROOFMARKET_HOME to one it owns."""


# --- proving ------------------------------------------------------------------------------------
class ProvingError(ProofMarketError, code="proving_failed", http_status=500, exit_code=3):
    """The proof could not be made; nobody is charged. The message says why; retrying a deterministic failure
    does not help."""


class CircuitCompileError(ProvingError, code="circuit_compile", http_status=422):
    """EZKL could not compile the model into a circuit; the message gives its reason. Simplify the model or
    report it."""


class AccuracyNotMet(ProvingError, code="accuracy_not_met", http_status=422):
    """No circuit settings kept the outputs within the accuracy bound; the message names the sample, the check
    and by how much, and what to do (drop a near-tie sample, state --task, raise --max-error)."""


class SRSError(ProvingError, code="srs_error"):
    """The structured reference string (SRS) for the circuit's size is missing or fails its check: 'proofmarket
    srs fetch LOGROWS'."""


class WitnessError(ProvingError, code="witness_failed", http_status=422):
    """The model could not be run in the circuit on this input (an overflow at its scale); nobody is charged."""


class ProofTimeout(ProvingError, code="proof_timeout", http_status=504):
    """The proof (or compile) ran longer than its limit (PROOFMARKET_PROOF_TIMEOUT_S,
    PROOFMARKET_COMPILE_TIMEOUT_S) and was stopped; nobody is charged."""


class CompileOutOfMemory(ProvingError, code="compile_out_of_memory", http_status=422):
    """The compile of an uploaded model needed more memory than the node's compile limit."""


class EzklVersionMismatch(ProvingError, code="ezkl_version_mismatch", http_status=409):
    """The prover's EZKL is not the version the model was compiled with: its keys could give a bad proof, so the
    job is refused (nothing proved, nothing charged)."""


class JobInterrupted(ProvingError, code="interrupted", http_status=503):
    """The node stopped while the job ran."""


# --- services -----------------------------------------------------------------------------------
class QueueUnavailable(ProofMarketError, code="queue_unavailable", http_status=503, exit_code=4):
    """The job queue's broker (Redis, for PROOFMARKET_QUEUE=celery) cannot be reached."""


class NodeUnavailable(ProofMarketError, code="node_unavailable", http_status=503, exit_code=4):
    """The SDK or the CLI could not reach a proofmarket node (refused, unresolvable, timed out)."""


# --- verification -------------------------------------------------------------------------------
class VerificationFailed(ProofMarketError, code="proof_invalid", http_status=422, exit_code=1):
    """The proof (or the bundle around it) does not hold. CLI exit code 1."""


class BundleError(VerificationFailed, code="bundle_invalid"):
    """The proof bundle does not hold: malformed, a field that differs from the model's manifest, or a proof
    that fails verification."""


class AnswerMismatch(VerificationFailed, code="answer_mismatch"):
    """The proof holds but does not answer the request the client made (model, input, salt, output or payment)."""


class ReceiptMismatch(VerificationFailed, code="receipt_mismatch"):
    """A paid bundle shows what its node-signed receipt does not sign: another model, input, output or bundle, or a
    payment section whose transaction, payer, amount or network was edited."""


class AttestationMismatch(VerificationFailed, code="attestation_mismatch"):
    """A re-execution of an attested result differs from what the node committed to (a chunk or a token)."""


class DevSrsRefused(VerificationFailed, code="dev_srs_refused"):
    """The model's SRS is not a pinned ceremony file: its proofs can be forged by whoever made it."""


class SettlementMismatch(VerificationFailed, code="settlement_mismatch"):
    """A node reported a settlement the chain does not show."""


class RegistryMismatch(VerificationFailed, code="registry_mismatch", http_status=409):
    """The on-chain registry entry for a model id is not the model we know (another verifier, vk, ONNX,
    layout, owner or a price above the cap): nothing is proved or escrowed for it."""


# --- chain --------------------------------------------------------------------------------------
class ChainError(ProofMarketError, code="chain_error", http_status=502, exit_code=4):
    """The chain refused or failed an operation; a more specific code says which."""


class ContractReverted(ChainError, code="contract_reverted", http_status=409):
    """A contract call reverted; the message decodes the reason (an unpaid request, a wrong state, an
    allowance)."""


class RPCUnavailable(ChainError, code="rpc_unavailable", http_status=503):
    """The chain's RPC does not answer (PROOFMARKET_RPC_URL, or the devnet of 'proofmarket chain up' is not
    running)."""


class TransactionNotMined(RPCUnavailable, code="transaction_not_mined", http_status=503):
    """A transaction was sent (``details.hashes``) but no receipt came in time: it may still be mined."""


class FeeTooHigh(ChainError, code="fee_too_high", http_status=503):
    """The chain's base fee is above the chain profile's fee cap: nothing was sent."""
