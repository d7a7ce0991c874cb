// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

interface ISliceVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool);
}

/// @title SlicedVerifier: one model proven as linked slices, verified as one proof.
/// @notice A model too large for one circuit is cut into slices (proofmarket `compile --slices N`), each a circuit
/// with its own EZKL verifier. This contract is the model's one verifier: `verifyProof(proof, instances)` takes
/// `instances` as one circuit of the model would lay them out (the first slice's input instances, then the last
/// slice's output instances: what the market binds to a request's input commitment and pays on) and
/// `proof` = abi.encode(bytes[] proofs, uint256[][] sliceInstances, bytes32[][] vkas).
///
/// The tensor between slice k and slice k+1 is committed in both proofs (KZG commitments, EZKL's polycommit: 64-byte
/// points at the start of a proof, a slice's input commitments first, then its output commitments). A slice's
/// link digests are keccak256 of those bytes: `inDigest` of its `inputs[k]` input commitments (zero for the first
/// slice, whose inputs are instances), `outDigest` of the `outputs[k]` output commitments after them (zero for the
/// last slice, whose outputs are instances). `verifyProof` is true only when every slice is valid, every link holds
/// (slice k's `outDigest` is slice k+1's `inDigest`: the same commitments, byte for byte), and the first slice's
/// inputs and the last slice's outputs are `instances` (`inputs[0]` and `outputs[n-1]` count instances).
///
/// A slice is valid when its verifier accepts its proof and instances here (a slice on a SharedVerifier clone,
/// `shared[k]` fixed at construction, takes abi.encode(vkas[k], proofs[k]), encoded here, and vkas[k] must be
/// given; another slice's verifier takes proofs[k] as it is, and vkas[k] must be empty), or when it was recorded
/// before: `record` verifies slices the same way in transactions of their own and keeps each as the key of
/// (slice, inDigest, outDigest, its instances); such a slice is sent as an empty proof with vkas[k] =
/// [inDigest, outDigest]. A call whose slices together need more gas than one transaction may carry (EIP-7825's cap)
/// is so settled in a bounded sequence: its slices recorded a few per transaction, then one `verifyProof` of their
/// keys. A record states a fact about a proof (its verifier accepted it), not about a call: anyone may record, and a
/// call still binds its own input and output through `instances`.
///
/// The verifiers and layout are fixed at construction, and `binding` (the keccak of the verifiers, their code hashes
/// and the layout) is immutable: this contract's code hash, which a registry records, commits to all of them.
contract SlicedVerifier {
    /// @notice keccak256(abi.encode(verifiers, their code hashes, inputs, outputs, shared)): in this contract's code.
    bytes32 public immutable binding;
    /// @notice Bytes of one commitment in an EZKL proof (a BN254 G1 point: x, then y).
    uint256 public constant POINT_BYTES = 64;
    /// @notice The slices `record` verified, by `recordKey`.
    mapping(bytes32 key => bool) public recorded;
    address[] private _verifiers;
    uint16[] private _inputs;
    uint16[] private _outputs;
    bool[] private _shared;

    /// @notice Slice `slice`'s proof verified and kept under `key` (`recordKey`).
    event SliceRecorded(uint256 indexed slice, bytes32 key);

    error BadLayout();
    error NoCode(address account);
    error VerifierOutOfGas();
    /// @notice `record` was given slice `slice` in a form it cannot check (no such slice, a proof shorter than its
    /// commitments, a VKA where the slice takes none or none where it takes one, lists of different lengths).
    error BadSlice(uint256 slice);
    /// @notice `record` was given a proof of slice `slice` its verifier does not accept.
    error SliceInvalid(uint256 slice);

    constructor(
        address[] memory verifiers_,
        uint16[] memory inputs_,
        uint16[] memory outputs_,
        bool[] memory shared_
    ) {
        uint256 n = verifiers_.length;
        if (n < 2 || inputs_.length != n || outputs_.length != n || shared_.length != n) revert BadLayout();
        bytes32[] memory codehashes = new bytes32[](n);
        for (uint256 k = 0; k < n; ++k) {
            if (verifiers_[k].code.length == 0) revert NoCode(verifiers_[k]);
            // a link compares at least one commitment, as many on each side
            if (k + 1 < n && (outputs_[k] == 0 || outputs_[k] != inputs_[k + 1])) revert BadLayout();
            codehashes[k] = verifiers_[k].codehash;
        }
        (_verifiers, _inputs, _outputs, _shared) = (verifiers_, inputs_, outputs_, shared_);
        binding = keccak256(abi.encode(verifiers_, codehashes, inputs_, outputs_, shared_));
    }

    /// @notice The slices' verifiers, each slice's input and output counts, and which are SharedVerifier clones.
    function slices() external view returns (address[] memory, uint16[] memory, uint16[] memory, bool[] memory) {
        return (_verifiers, _inputs, _outputs, _shared);
    }

    /// @notice True when every slice is valid and every link holds (see the contract notice). A malformed `proof`
    /// reverts (the market counts a revert as an invalid proof); a slice verifier out of gas reverts with
    /// `VerifierOutOfGas()`, so that a too-low gas limit cannot make a valid proof count as invalid.
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool) {
        (bytes[] memory proofs, uint256[][] memory parts, bytes32[][] memory vkas) =
            abi.decode(proof, (bytes[], uint256[][], bytes32[][]));
        uint256 n = _verifiers.length;
        if (proofs.length != n || parts.length != n || vkas.length != n) return false;
        uint256 first = _inputs[0];
        uint256 last = _outputs[n - 1];
        if (instances.length != first + last) return false;
        if (parts[0].length < first || parts[n - 1].length < last) return false;
        for (uint256 i = 0; i < first; ++i) {
            if (parts[0][i] != instances[i]) return false;
        }
        uint256[] memory tail = parts[n - 1];
        for (uint256 i = 0; i < last; ++i) {
            if (tail[tail.length - last + i] != instances[first + i]) return false;
        }
        bytes32 before = bytes32(0); // slice k-1's outDigest
        for (uint256 k = 0; k < n; ++k) {
            bytes32 inDigest = bytes32(0);
            bytes32 outDigest = bytes32(0);
            if (proofs[k].length == 0) { // recorded before: its digests in the place of a VKA, its key kept
                if (vkas[k].length != 2) return false;
                (inDigest, outDigest) = (vkas[k][0], vkas[k][1]);
                if (!recorded[recordKey(k, inDigest, outDigest, parts[k])]) return false;
            } else {
                bool ok;
                (ok, inDigest, outDigest) = _digests(k, proofs[k]);
                if (!ok || (vkas[k].length != 0) != _shared[k]) return false; // a clone's VKA, and only a clone's
            }
            if (k > 0 && inDigest != before) return false;
            before = outDigest;
        }
        for (uint256 k = 0; k < n; ++k) { // every link held: now the slices' verifiers, the costly part
            if (proofs[k].length != 0 && !_check(k, proofs[k], parts[k], vkas[k])) return false;
        }
        return true;
    }

    /// @notice Verify slices ahead of a call, each on its verifier as `verifyProof` would, and keep each under its
    /// `recordKey` (`proofs[i]` is slice `ks[i]`'s, with its instances and its VKA as in `verifyProof`). Reverts
    /// with `SliceInvalid` when a verifier refuses one, `BadSlice` when one is malformed: nothing is kept then.
    function record(uint256[] calldata ks, bytes[] calldata proofs, uint256[][] calldata parts,
                    bytes32[][] calldata vkas) external returns (bytes32[] memory keys) {
        uint256 m = ks.length;
        if (proofs.length != m || parts.length != m || vkas.length != m) revert BadSlice(m);
        keys = new bytes32[](m);
        for (uint256 i = 0; i < m; ++i) {
            uint256 k = ks[i];
            if (k >= _verifiers.length || (vkas[i].length != 0) != _shared[k]) revert BadSlice(k);
            (bool ok, bytes32 inDigest, bytes32 outDigest) = _digests(k, proofs[i]);
            if (!ok) revert BadSlice(k);
            if (!_check(k, proofs[i], parts[i], vkas[i])) revert SliceInvalid(k);
            keys[i] = recordKey(k, inDigest, outDigest, parts[i]);
            recorded[keys[i]] = true;
            emit SliceRecorded(k, keys[i]);
        }
    }

    /// @notice The key a slice is recorded under: keccak256(abi.encode(slice, inDigest, outDigest, instances)).
    function recordKey(uint256 k, bytes32 inDigest, bytes32 outDigest, uint256[] memory parts)
        public pure returns (bytes32)
    {
        return keccak256(abi.encode(k, inDigest, outDigest, parts));
    }

    /// @dev Slice k's link digests in its proof (false: the proof is shorter than its commitments).
    function _digests(uint256 k, bytes memory proof) private view returns (bool, bytes32 inDigest, bytes32 outDigest) {
        uint256 start = k == 0 ? 0 : uint256(_inputs[k]) * POINT_BYTES;
        uint256 size = k + 1 == _verifiers.length ? 0 : uint256(_outputs[k]) * POINT_BYTES;
        if (proof.length < start + size) return (false, 0, 0);
        if (k != 0) inDigest = _digest(proof, 0, start);
        if (size != 0) outDigest = _digest(proof, start, size);
        return (true, inDigest, outDigest);
    }

    /// @dev keccak256 of `size` bytes of `data` from byte `start` (the caller checked they are inside it).
    function _digest(bytes memory data, uint256 start, uint256 size) private pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            digest := keccak256(add(add(data, 32), start), size)
        }
    }

    /// @dev Slice k's verifier on its proof (a clone's with its VKA in front).
    function _check(uint256 k, bytes memory proof, uint256[] memory instances, bytes32[] memory vka)
        private returns (bool)
    {
        bytes memory sent = _shared[k] ? abi.encode(vka, proof) : proof;
        uint256 gasBefore = gasleft();
        try ISliceVerifier(_verifiers[k]).verifyProof(sent, instances) returns (bool ok) {
            return ok;
        } catch (bytes memory reason) {
            if (gasleft() <= gasBefore / 63 || (reason.length >= 4 && bytes4(reason) == VerifierOutOfGas.selector)) {
                revert VerifierOutOfGas();
            }
            return false;
        }
    }
}
