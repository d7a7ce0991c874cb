// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

interface ISliceVerifier {
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool);
}

/// @title SlicedVerifier: one model proven as linked slices, verified as one proof.
/// @notice A model too large for one circuit is cut into slices (proofmarket `compile --slices N`), each a circuit
/// with its own EZKL verifier. This contract is the model's one verifier: `verifyProof(proof, instances)` takes
/// `instances` as one circuit of the model would lay them out (the first slice's input instances, then the last
/// slice's output instances: what the market binds to a request's input commitment and pays on) and `proof` =
/// abi.encode(bytes[] proofs, uint256[][] sliceInstances, bytes32[][] vkas). The tensor between slice k and slice
/// k+1 is committed in both proofs (KZG commitments, EZKL's polycommit: 64-byte points at the start of a proof, a
/// slice's input commitments first, then its output commitments). It is true only when every slice's verifier
/// accepts its proof and instances (a slice on a SharedVerifier clone, `shared[k]` fixed at construction, takes
/// abi.encode(vkas[k], proofs[k]), encoded here, and vkas[k] must be given; another slice's verifier takes proofs[k] as
/// it is, and vkas[k] must be empty: the links are compared on the very bytes each verifier checks), each link holds (slice k's `outputs[k]` output commitments, after its
/// `inputs[k]` input commitments, are the first `inputs[k+1]` commitments of slice k+1's proof, byte for byte), and
/// the first slice's inputs and the last slice's outputs are `instances` (`inputs[0]` and `outputs[n-1]` count
/// instances; the others, commitments). The verifiers and layout are fixed at construction, and `binding` (the
/// keccak of the verifiers, their code hashes and the layout) is immutable: this contract's code hash, which a
/// registry records, commits to all of them.
contract SlicedVerifier {
    /// @notice keccak256(abi.encode(verifiers, their code hashes, inputs, outputs, shared)): in this contract's code.
    bytes32 public immutable binding;
    /// @notice Bytes of one commitment in an EZKL proof (a BN254 G1 point: x, then y).
    uint256 public constant POINT_BYTES = 64;
    address[] private _verifiers;
    uint16[] private _inputs;
    uint16[] private _outputs;
    bool[] private _shared;

    error BadLayout();
    error NoCode(address account);
    error VerifierOutOfGas();

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

    /// @notice True when every slice's proof verifies and every link holds (see the contract notice). A malformed
    /// `proof` reverts (the market counts a revert as an invalid proof); a slice verifier out of gas reverts with
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
        for (uint256 k = 0; k + 1 < n; ++k) {
            uint256 size = uint256(_outputs[k]) * POINT_BYTES;
            uint256 start = k == 0 ? 0 : uint256(_inputs[k]) * POINT_BYTES;
            if (proofs[k].length < start + size || proofs[k + 1].length < size) return false;
            if (_digest(proofs[k], start, size) != _digest(proofs[k + 1], 0, size)) return false;
        }
        for (uint256 k = 0; k < n; ++k) {
            if ((vkas[k].length != 0) != _shared[k]) return false; // a clone's VKA, and only a clone's
            bytes memory sent = _shared[k] ? abi.encode(vkas[k], proofs[k]) : proofs[k];
            if (!_check(_verifiers[k], sent, parts[k])) return false;
        }
        return true;
    }

    /// @dev keccak256 of `size` bytes of `data` from byte `start` (the caller checked they are inside it).
    function _digest(bytes memory data, uint256 start, uint256 size) private pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            digest := keccak256(add(add(data, 32), start), size)
        }
    }

    function _check(address verifier, bytes memory proof, uint256[] memory instances) private returns (bool) {
        uint256 gasBefore = gasleft();
        try ISliceVerifier(verifier).verifyProof(proof, instances) returns (bool ok) {
            return ok;
        } catch (bytes memory reason) {
            if (gasleft() <= gasBefore / 63 || (reason.length >= 4 && bytes4(reason) == VerifierOutOfGas.selector)) {
                revert VerifierOutOfGas();
            }
            return false;
        }
    }
}
