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
/// abi.encode(bytes[] proofs, uint256[][] sliceInstances). It is true only when every slice's verifier accepts its
/// proof and instances, each link holds (slice k's output instances, its last `outputs[k]`, are slice k+1's input
/// instances, its first `inputs[k+1]`: the Poseidon hash of the tensor between them), the first slice's inputs and
/// the last slice's outputs are `instances`. The verifiers and layout are fixed at construction, and `binding` (the
/// keccak of the verifiers, their code hashes and the layout) is immutable: this contract's code hash, which a
/// registry records, commits to all of them.
contract SlicedVerifier {
    /// @notice keccak256(abi.encode(verifiers, their code hashes, inputs, outputs)): in this contract's code.
    bytes32 public immutable binding;
    address[] private _verifiers;
    uint16[] private _inputs;
    uint16[] private _outputs;

    error BadLayout();
    error NoCode(address account);
    error VerifierOutOfGas();

    constructor(address[] memory verifiers_, uint16[] memory inputs_, uint16[] memory outputs_) {
        uint256 n = verifiers_.length;
        if (n < 2 || inputs_.length != n || outputs_.length != n) revert BadLayout();
        bytes32[] memory codehashes = new bytes32[](n);
        for (uint256 k = 0; k < n; ++k) {
            if (verifiers_[k].code.length == 0) revert NoCode(verifiers_[k]);
            if (k + 1 < n && outputs_[k] != inputs_[k + 1]) revert BadLayout();
            codehashes[k] = verifiers_[k].codehash;
        }
        (_verifiers, _inputs, _outputs) = (verifiers_, inputs_, outputs_);
        binding = keccak256(abi.encode(verifiers_, codehashes, inputs_, outputs_));
    }

    /// @notice The slices' verifiers and each slice's input and output instance counts, in order.
    function slices() external view returns (address[] memory, uint16[] memory, uint16[] memory) {
        return (_verifiers, _inputs, _outputs);
    }

    /// @notice True when every slice's proof verifies and every link holds (see the contract notice). A malformed
    /// `proof` reverts (the market counts a revert as an invalid proof); a slice verifier out of gas reverts with
    /// `VerifierOutOfGas()`, so that a too-low gas limit cannot make a valid proof count as invalid.
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool) {
        (bytes[] memory proofs, uint256[][] memory parts) = abi.decode(proof, (bytes[], uint256[][]));
        uint256 n = _verifiers.length;
        if (proofs.length != n || parts.length != n) return false;
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
            uint256 links = _outputs[k];
            uint256[] memory out = parts[k];
            uint256[] memory next = parts[k + 1];
            if (out.length < links || next.length < links) return false;
            for (uint256 i = 0; i < links; ++i) {
                if (out[out.length - links + i] != next[i]) return false;
            }
        }
        for (uint256 k = 0; k < n; ++k) {
            if (!_check(_verifiers[k], proofs[k], parts[k])) return false;
        }
        return true;
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
