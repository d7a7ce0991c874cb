// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";

/// @title AttestationVerifier
/// @notice The "verifier" an attested model (proofmarket-attested-toploc-v1) is registered with. It proves
/// nothing: it accepts a fulfilment when the model's attester (the node the owner named at registration)
/// signed the instances, so escrow pays on the node's signed attestation, not on a proof. Instances:
/// [request hash, weights root, decoding hash, commitments hash, output hash]; the proof is the attester's
/// 65-byte EIP-191 signature over keccak256(abi.encodePacked(instances)). The weights root is fixed here,
/// so a signature over other weights is refused. Re-checks, challenges and slashing are the validators' job.
contract AttestationVerifier {
    uint256 public constant INSTANCES = 5;
    address public immutable attester;
    bytes32 public immutable weightsRoot;

    error ZeroAttester();

    constructor(address attester_, bytes32 weightsRoot_) {
        if (attester_ == address(0)) revert ZeroAttester();
        attester = attester_;
        weightsRoot = weightsRoot_;
    }

    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool) {
        if (instances.length != INSTANCES || bytes32(instances[1]) != weightsRoot) return false;
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(keccak256(abi.encodePacked(instances)));
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, proof);
        return err == ECDSA.RecoverError.NoError && signer == attester;
    }
}
