// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title ModelRegistry: the on-chain listing of proofmarket models.
/// @notice A model id is namespaced by its owner: modelId = keccak256(abi.encode(owner, key)), where the
/// key is chosen by the owner (proofmarket uses keccak256(utf8(model CID string)), see
/// proofmarket.chain.commitments). Registering the same key from another account gives another id, so
/// nobody can take or poison an owner's model id. Clients still check that the entry (vkDigest, ONNX
/// hash, verifier code hash) is the model they expect. The verifier's code hash is recorded at
/// registration. The proving identity (ONNX hash, vk digest, params commitment, settings hash, verifier,
/// instance layout, proof mode) is immutable; the owner may change the price and metadata and (de)activate.
/// Price is in USDC atomic units (6 decimals). The owner's share is a fraction of the price in basis
/// points; the platform fee (InferenceMarket, at most 10%) and the prover get the rest.
contract ModelRegistry {
    uint16 public constant BPS = 10_000;
    /// @notice Owner share cap, so that owner share + max platform fee (10%) <= 100%.
    uint16 public constant MAX_OWNER_SHARE_BPS = 9_000;
    /// @notice proofMode bit 0: input is hashed (Poseidon); bit 1: params are hashed.
    uint8 public constant MODE_HASHED_INPUT = 1;
    uint8 public constant MODE_HASHED_PARAMS = 2;

    /// @notice What the registrant supplies.
    /// inputInstances: how many leading public instances of a proof make up the input (raw felts for
    /// a public input, one Poseidon hash per input tensor for a hashed input); must be >= 1.
    /// instanceCount: the total number of public instances of a proof (input, params commitment, output).
    /// paramsCommitment: the Poseidon hash instance of the params (it follows the input instances),
    /// 0 when the params are fixed in the verifying key.
    struct ModelSpec {
        bytes32 onnxSha256;
        bytes32 vkDigest;
        uint256 paramsCommitment;
        bytes32 settingsHash;
        address verifier;
        uint96 price;
        uint16 ownerShareBps;
        uint16 inputInstances;
        uint16 instanceCount;
        uint8 proofMode;
        string metadataCid;
    }

    struct Model {
        address owner;
        bool active;
        bytes32 key;
        bytes32 verifierCodehash;
        ModelSpec spec;
    }

    /// @notice What InferenceMarket needs to take a request and settle a proof.
    struct Terms {
        address owner;
        address verifier;
        uint96 price;
        uint16 ownerShareBps;
        uint16 inputInstances;
        uint16 instanceCount;
        bool active;
        uint256 paramsCommitment;
    }

    /// @notice A verifier of the model's batch circuit of `size` calls (one proof over `size` inputs, each slot laid out
    /// as the model's own instances: all slots' inputs, the params commitment once, all slots' outputs). Set once per
    /// size by the owner; `registeredAt` lets the market take it only for requests made after it (a verifier added
    /// while a request is open never settles that request).
    struct BatchVerifier {
        address verifier;
        uint64 registeredAt;
        bytes32 codehash;
    }

    uint16 public constant MAX_BATCH = 64;

    mapping(bytes32 modelId => Model) private _models;
    mapping(bytes32 modelId => mapping(uint16 size => BatchVerifier)) private _batches;
    /// @notice The sizes a model has a batch verifier of: bit `size - 1` set for each (sizes 2 .. 64), so that one
    /// read tells a consumer every batch verifier it must check.
    mapping(bytes32 modelId => uint64) public batchSizes;

    event ModelRegistered(
        bytes32 indexed modelId, address indexed owner, bytes32 indexed key, address verifier, ModelSpec spec
    );
    event PriceUpdated(bytes32 indexed modelId, uint96 oldPrice, uint96 newPrice);
    event MetadataUpdated(bytes32 indexed modelId, string metadataCid);
    event ModelActivationChanged(bytes32 indexed modelId, bool active);
    event BatchVerifierRegistered(bytes32 indexed modelId, uint16 size, address verifier, bytes32 codehash);

    error InvalidModelId();
    error ModelAlreadyRegistered(bytes32 modelId);
    error UnknownModel(bytes32 modelId);
    error NotModelOwner(bytes32 modelId, address caller);
    error VerifierHasNoCode(address verifier);
    error OwnerShareTooHigh(uint16 ownerShareBps, uint16 maxBps);
    error ZeroPrice();
    error NoInputInstances();
    error BadInstanceCount(uint16 instanceCount, uint16 minimum);
    error InvalidProofMode(uint8 proofMode, uint256 paramsCommitment);
    error ActivationUnchanged(bytes32 modelId, bool active);
    error BadBatchSize(uint16 size, uint16 maximum);
    error BatchVerifierAlreadyRegistered(bytes32 modelId, uint16 size);

    modifier onlyModelOwner(bytes32 modelId) {
        address owner = _models[modelId].owner;
        if (owner == address(0)) revert UnknownModel(modelId);
        if (owner != msg.sender) revert NotModelOwner(modelId, msg.sender);
        _;
    }

    /// @notice The id of `key` in `owner`'s namespace.
    function modelIdOf(address owner, bytes32 key) public pure returns (bytes32) {
        return keccak256(abi.encode(owner, key));
    }

    /// @notice List a model under modelIdOf(caller, key), owned by the caller, active from now on.
    function register(bytes32 key, ModelSpec calldata spec) external returns (bytes32 modelId) {
        if (key == bytes32(0)) revert InvalidModelId();
        modelId = modelIdOf(msg.sender, key);
        if (_models[modelId].owner != address(0)) revert ModelAlreadyRegistered(modelId);
        _checkSpec(spec);
        Model storage m = _models[modelId];
        m.owner = msg.sender;
        m.active = true;
        m.key = key;
        m.verifierCodehash = spec.verifier.codehash;
        m.spec = spec;
        emit ModelRegistered(modelId, msg.sender, key, spec.verifier, spec);
    }

    /// @notice Register the verifier of the model's batch circuit of `size` calls (once per size: like the model's
    /// own verifier, it is part of what a consumer checks before it pays).
    function registerBatch(bytes32 modelId, uint16 size, address verifier) external onlyModelOwner(modelId) {
        if (size < 2 || size > MAX_BATCH) revert BadBatchSize(size, MAX_BATCH);
        if (verifier.code.length == 0) revert VerifierHasNoCode(verifier);
        if (_batches[modelId][size].verifier != address(0)) revert BatchVerifierAlreadyRegistered(modelId, size);
        _batches[modelId][size] = BatchVerifier(verifier, uint64(block.timestamp), verifier.codehash);
        batchSizes[modelId] |= uint64(1) << (size - 1);
        emit BatchVerifierRegistered(modelId, size, verifier, verifier.codehash);
    }

    /// @notice The model's batch verifier of `size` calls (verifier zero: none).
    function batchVerifier(bytes32 modelId, uint16 size) external view returns (BatchVerifier memory) {
        return _batches[modelId][size];
    }

    function updatePrice(bytes32 modelId, uint96 newPrice) external onlyModelOwner(modelId) {
        if (newPrice == 0) revert ZeroPrice();
        ModelSpec storage spec = _models[modelId].spec;
        emit PriceUpdated(modelId, spec.price, newPrice);
        spec.price = newPrice;
    }

    function updateMetadata(bytes32 modelId, string calldata metadataCid) external onlyModelOwner(modelId) {
        _models[modelId].spec.metadataCid = metadataCid;
        emit MetadataUpdated(modelId, metadataCid);
    }

    /// @notice Inactive models take no new requests; open requests can still be fulfilled or refunded.
    function setActive(bytes32 modelId, bool active) external onlyModelOwner(modelId) {
        if (_models[modelId].active == active) revert ActivationUnchanged(modelId, active);
        _models[modelId].active = active;
        emit ModelActivationChanged(modelId, active);
    }

    function exists(bytes32 modelId) external view returns (bool) {
        return _models[modelId].owner != address(0);
    }

    function getModel(bytes32 modelId) external view returns (Model memory) {
        Model storage m = _models[modelId];
        if (m.owner == address(0)) revert UnknownModel(modelId);
        return m;
    }

    function terms(bytes32 modelId) external view returns (Terms memory t) {
        Model storage m = _models[modelId];
        if (m.owner == address(0)) revert UnknownModel(modelId);
        ModelSpec storage s = m.spec;
        t = Terms(
            m.owner, s.verifier, s.price, s.ownerShareBps, s.inputInstances, s.instanceCount, m.active, s.paramsCommitment
        );
    }

    function _checkSpec(ModelSpec calldata spec) private view {
        if (spec.verifier.code.length == 0) revert VerifierHasNoCode(spec.verifier);
        if (spec.ownerShareBps > MAX_OWNER_SHARE_BPS) {
            revert OwnerShareTooHigh(spec.ownerShareBps, MAX_OWNER_SHARE_BPS);
        }
        if (spec.price == 0) revert ZeroPrice();
        if (spec.inputInstances == 0) revert NoInputInstances();
        bool hashedParams = spec.proofMode & MODE_HASHED_PARAMS != 0;
        // at least one output instance after the input (and the params commitment)
        uint16 minimum = spec.inputInstances + (hashedParams ? 2 : 1);
        if (spec.instanceCount < minimum) revert BadInstanceCount(spec.instanceCount, minimum);
        if (spec.proofMode > 3 || hashedParams != (spec.paramsCommitment != 0)) {
            revert InvalidProofMode(spec.proofMode, spec.paramsCommitment);
        }
    }
}
