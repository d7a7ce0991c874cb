"""API schemas (what clients see), kept apart from the table rows (``proofmarket.db.tables``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

USDC_DECIMALS = 6
ACCESS_TOKEN_NOTE = ("this job's capability, sent only in the answer that created it (and its idempotent "
                     "retries): send it as the X-Job-Token header to read the job and its proof bundles")


class Price(BaseModel):
    atomic: str = Field(description="price in the asset's smallest unit (decimal string)")
    amount: str = Field(description="price in USDC, for people")
    asset: str = "USDC"
    decimals: int = USDC_DECIMALS

    @classmethod
    def of(cls, atomic: int) -> Price:
        text = format(Decimal(atomic).scaleb(-USDC_DECIMALS), "f")
        amount = text.rstrip("0").rstrip(".") if "." in text else text
        return cls(atomic=str(atomic), amount=amount)


class Tensor(BaseModel):
    name: str
    shape: list[int]
    dtype: str


class Privacy(BaseModel):
    name: str
    input: str
    params: str
    output: str


class Srs(BaseModel):
    cid: str
    sha256: str
    kind: str = Field(description="'dev' (testing only) or 'ceremony'")
    logrows: int


class Commitments(BaseModel):
    onnx_sha256: str = Field(description="sha256 of the owner's ONNX file: the model commitment")
    vk_digest: str = Field(description="sha256 of the verifying key")
    vk_cid: str
    settings_cid: str
    srs: Srs


class Verifier(BaseModel):
    bytecode_cid: str
    abi_cid: str
    source_cid: str
    deployed_size: int
    address: str | None = Field(default=None, description="the deployed verifier contract, once registered")


class ModelLinks(BaseModel):
    self: str
    infer: str | None = Field(default=None, description="proven models: POST here for an output with its proof")
    generate: str | None = Field(default=None, description="attested models: POST here for generated text")


Mode = str  # "proven" (EZKL), "attested", or the mode label of another registered proof system
MODE_DESCRIPTION = ("proven: each output comes with a zero-knowledge proof (EZKL); attested: the node signs "
                    "commitments anyone with the weights can re-execute (not a proof)")


class AttestedTerms(BaseModel):
    """What an attested model commits to and how a call is priced."""

    kind: str
    architecture: str
    weights_root: str = Field(description="sha256 Merkle root over the model's tensors")
    weights_dtype: str
    context_length: int | None = Field(default=None, description="causal LMs: prompt + output tokens")
    max_tokens_cap: int | None = Field(default=None, description="causal LMs: the most tokens one call may ask for")
    chunk_tokens: int | None = Field(default=None, description="causal LMs: tokens per activation commitment")
    probes: list[str] | None = Field(default=None, description="ONNX models: intermediate tensors committed to")
    topk: int
    runtime: dict[str, str]
    price_unit: str = Field(description="causal LMs: per 1,000 output tokens (the tokens generated charged with "
                                        "x402 upto, channels and credits, max_tokens with exact); ONNX: per call")
    files: dict[str, str] = Field(description="file name -> CID (open weights: fetch them at /v1/artifacts/{cid})")


class RegistryListing(BaseModel):
    """The model's listing on the market's ModelRegistry: the terms it is sold on (check them on chain)."""

    chain_id: int
    registry: str = Field(description="ModelRegistry address")
    market: str = Field(description="InferenceMarket address (escrow, x402 revenue splits)")
    onchain_id: str = Field(description="modelIdOf(owner, keccak256(model CID))")
    owner: str
    registered: bool = Field(description="false: not listed by this owner; sold on the node's own terms")
    active: bool
    price_atomic: str | None = None
    verifier: str | None = Field(default=None, description="the model's Halo2Verifier contract")
    owner_share_bps: int | None = None
    pay_to: str | None = Field(default=None, description="x402 payTo: the RevenueSplitter of (model, this node's "
                                                         "prover); releaseSplit pays owner, prover and platform")
    prover: str | None = Field(default=None, description="this node's prover address")
    error: str | None = Field(default=None, description="set when the listing is not this model: not sold")


class ProverProfile(BaseModel):
    """The node's prover on chain: market counters and stake, and its ERC-8004 identity and scores."""

    address: str
    stake: int = Field(description="atomic USDC staked on the market")
    fulfilled: int
    failed: int
    expired: int
    erc8004: dict[str, Any] | None = Field(default=None, description="agent_id, registry, reputation {count, "
                                                                     "average}, validations {count, average}")


class ModelSummary(BaseModel):
    id: str = Field(description="CID of the model manifest")
    name: str
    mode: Mode = Field(default="proven", description=MODE_DESCRIPTION)
    price: Price
    privacy: str
    owner: str | None
    active: bool = Field(default=True, description="false: deactivated on the registry, not sold")
    created_at: datetime
    links: ModelLinks
    registry: RegistryListing | None = Field(default=None, description="set when a market is deployed: the "
                                                                        "price, owner and active flag come from it")
    prover: ProverProfile | None = Field(default=None, description="set when a market is deployed: who proves, "
                                                                   "its record and ERC-8004 scores")
    status: Literal["pending", "active", "rejected"] = Field(
        default="active", description="pending: waits for the operator's review (not sold); rejected: not sold")
    review_reason: str | None = None
    description: str = ""
    task: str | None = None
    tags: list[str] = []
    license: str | None = None
    catalog: dict[str, Any] | None = Field(default=None, description="the catalogue entry: description, task, tags, "
                                                                     "license, homepage, inputs, outputs, example")
    catalog_cid: str | None = Field(default=None, description="the entry in the store (the registry listing's "
                                                              "metadata CID may name it)")
    supersedes: str | None = Field(default=None, description="the owner's listing this version replaces")
    calls_30d: int | None = Field(default=None, description="calls over the last 30 days (a minute old at most); "
                                                            "null when fewer than the node's public stats show")


class ModelPublic(ModelSummary):
    guarantee: str = Field(default="", description="what an answer of this model guarantees, in one sentence")
    privacy_profile: Privacy
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    is_classifier: bool = False
    logrows: int | None = None
    commitments: Commitments | None = None
    verifier: Verifier | None = None
    shared_verifier: dict[str, Any] | None = Field(
        default=None, description="EZKL's reusable verifier every listing may share, and this model's verification-key "
        "artifact for it: source_cid, bytecode_cid, runtime_keccak, vka_cid, vka_digest (the digest a SharedVerifier "
        "clone pins)")
    batches: list[dict[str, Any]] = Field(default=[], description="the batch circuits calls may be proven in: size, "
                                          "logrows, verifier_bytecode_cid (fulfillBatch) or null. Batching is opt-in "
                                          "per call (?batch=allow): a shared proof shows its callers each other's "
                                          "inputs and outputs; a call that does not opt in is proven alone")
    accuracy: dict[str, Any] = {}
    ezkl_version: str | None = None
    input_domain: dict[str, Any] | None = Field(
        default=None, description="the inputs the circuit is calibrated for: per input, low and high (one number for "
        "every element, or one per element), and its source (stated by the owner, or the samples' range widened by "
        "margin); a call outside it is refused with input_out_of_range before any payment")
    attested: AttestedTerms | None = Field(default=None, description="attested models: commitments and terms")
    sliced: dict[str, Any] | None = Field(
        default=None, description="a model proven as linked slices: slices (each slice's model id, in order) and plan "
        "(where the graph is cut, each slice's work); a call's bundle carries every slice's proof")


class ModelList(BaseModel):
    models: list[ModelSummary]
    total: int | None = Field(default=None, description="listings matching the query, over every page")
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page; null: last page")


class ReviewBody(BaseModel):
    decision: Literal["approve", "reject"]
    reason: str | None = Field(default=None, max_length=500)


class ModelVersions(BaseModel):
    """A line of versions, oldest first (each names the one before it as ``supersedes``, one owner)."""

    model_id: str
    latest: str = Field(description="the newest version that is sold (active)")
    versions: list[ModelSummary]


class JobErrorPublic(BaseModel):
    code: str
    message: str


class JobResult(BaseModel):
    output: list[list[float]] | None = None
    bundle_cid: str | None = None
    salt: list[int] | None = Field(default=None, description="opening of a hashed input's commitment; keep it")
    payment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    model_id: str | None = Field(default=None, description="compile jobs: the compiled model's id")
    logrows: int | None = None
    answer: dict[str, Any] | None = Field(
        default=None, description="a call whose system answers more than an output (an attested generation): the "
                                  "answer its route gives (text, tokens, bundle with payment and receipt)")


class JobLinks(BaseModel):
    self: str
    proof: str | None = None
    model: str | None = None


class JobPublic(BaseModel):
    """A call (kind ``prove``: any proof system, any payment rail) or a compile job."""

    id: str
    kind: Literal["prove", "compile"]
    status: Literal["queued", "running", "proved", "settling", "settled", "failed"]
    model_id: str | None
    system: str | None = Field(default=None, description="the call's proof system (e.g. ezkl-halo2-kzg-bn254)")
    rail: str | None = Field(default=None, description="what pays for it: free, x402, escrow, court, ...")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    error: JobErrorPublic | None = None
    progress: str | None = Field(default=None, description="a running compile's current step, with its ETA")
    request_id: str | None = Field(default=None, description="the X-Request-ID of the request that made the call "
                                                              "(its log lines, node's and worker's, carry it)")
    result: JobResult | None = Field(default=None, description="shown once proved (and settled, when paid)")
    links: JobLinks
    access_token: str | None = Field(default=None, description=ACCESS_TOKEN_NOTE)


class InferResult(BaseModel):
    job_id: str
    status: Literal["proved", "settled"]
    model_id: str
    output: list[list[float]]
    bundle_cid: str
    bundle: dict[str, Any] = Field(description="the proof bundle (proofmarket/proof-bundle v1)")
    payment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    salt: list[int] | None = None
    access_token: str = Field(description=ACCESS_TOKEN_NOTE)
    mode: str = Field(default="proven", description="proven (a ZK proof), attested (signed commitments), ...")
    system: str | None = Field(default=None, description="the proof system that backs the output")
    guarantee: str | None = Field(default=None, description="what the bundle proves, in one sentence")


class GenerateUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    charged_tokens: int = Field(description="max_tokens: what the call authorized (exact captures it; upto, "
                                            "batch-settlement and credits charge completion_tokens: the answer's "
                                            "payment.amount is what was charged)")


class GenerateResult(BaseModel):
    """An attested generation (also the ``result`` event of the SSE stream)."""

    model_id: str
    mode: Literal["attested"] = "attested"
    text: str
    tokens: list[int]
    finish_reason: Literal["stop", "length"]
    usage: GenerateUsage
    bundle_cid: str
    bundle: dict[str, Any] = Field(description="the attested bundle (with payment and receipt when paid)")
    payment: dict[str, Any] | None = None
    receipt: dict[str, Any] | None = None
    guarantee: str


class VerifyValid(BaseModel):
    valid: Literal[True] = True
    mode: Mode = "proven"
    model_id: str
    output: list[list[float]]
    srs_kind: str
    checks: list[str]
    warnings: list[str] = []
    reexecuted: bool | None = Field(default=None, description="attested bundles: false (the node re-runs nothing)")
    text: str | None = Field(default=None, description="attested text generation: the output text")


class VerifyInvalid(BaseModel):
    valid: Literal[False] = False
    code: str = Field(description="proof_invalid or bundle_invalid")
    reason: str


class ServiceState(BaseModel):
    name: str = Field(description="listings, call-settler, engine, sweeper, settler, webhooks, escrow-watcher, "
                                  "court-watcher")
    running: bool
    passes: int = Field(description="passes that ended well since the node started")
    failures: int = Field(description="passes that failed (each is tried again later)")
    last_pass_at: float | None = Field(description="unix time of the last pass, well or not")
    error: str | None = Field(description="while its passes keep failing: the error's code or kind (no message)")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: bool
    workers: int
    provers_warm: int = Field(description="prover processes started with EZKL loaded; below the prover count "
                                          "right after a start, while they warm up")
    queue_depth: int
    queue: str = Field(default="local", description="the job queue engine: local (in the node) or celery")
    jobs: dict[str, int]
    services: list[ServiceState] = Field(default_factory=list, description="the node's background services in "
                                         "start order (they stop in the reverse order); one not running degrades")
    agent: dict[str, Any] | None = Field(None, description="the node's ERC-8004 identity when it keeps one "
                                         "(PROOFMARKET_AGENT_REGISTER=on): agent_id (null until registered), registry "
                                         "(eip155:<chain id>:<address>) and the registration file's uri")
    payouts_held: str | None = Field(None, description="why the node pays nothing (no payout, no credits refund): "
                                     "its account sent token transfers its book does not hold, as after a restore "
                                     "from an older backup; `proofmarket ledger replay` books them")



class ServiceModel(BaseModel):
    id: str
    name: str
    mode: Mode = "proven"
    price: Price
    privacy: str
    infer: str | None = None
    generate: str | None = None
    details: str
    active: bool = True
    registry: RegistryListing | None = None


class ServiceManifest(BaseModel):
    format: str = "proofmarket/ai-service"
    version: int = 1
    name: str
    description: str
    software: str
    base_url: str
    openapi: str
    docs: str
    endpoints: dict[str, str]
    payments: dict[str, Any]
    chain: dict[str, Any] | None
    proofs: dict[str, Any]
    models: list[ServiceModel]
    address_signature: dict[str, Any] | None = None  # what a wallet signs to read its history (api/signed.py)
