// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";

/// @title SharedVerifier: listings that share one of EZKL's reusable Halo2 verifiers.
/// @notice EZKL renders a reusable verifier (`Halo2VerifierReusable`) that checks a proof of any circuit given that
/// circuit's verification-key artifact (VKA: a list of words, named by the keccak256 of the words, its digest), and
/// anybody may register any VKA on it: a listing must never point at it directly. A listing points at a clone of this
/// contract (EIP-1167 with immutable arguments) that pins (reusable verifier, VKA digest); the clone's
/// `verifyProof(proof, instances)` takes `proof` = abi.encode(bytes32[] vka, bytes ezklProof), refuses every other
/// VKA and asks the reusable verifier. The clone's code, so the registry's verifier codehash, commits to both.
/// The implementation (the market deployment's `SharedVerifier`) also names one reusable verifier per code hash
/// (`reusableOf`), so an owner finds the one already on the chain and deploys nothing but a clone.
contract SharedVerifier {
    address private immutable _self;

    /// @notice The reusable verifier named for a code hash (the first named stays).
    mapping(bytes32 codehash => address) public reusableOf;

    event ReusableAdded(bytes32 indexed codehash, address verifier);
    event VerifierCloned(address indexed reusable, bytes32 indexed vkaDigest, address verifier);

    error OnlyImplementation();
    error OnlyClone();
    error NoCode(address account);
    error VerifierOutOfGas();

    constructor() {
        _self = address(this);
    }

    /// @notice Name `verifier` as the reusable verifier of its code, unless one is named: the one named.
    function addReusable(address verifier) external returns (address) {
        if (address(this) != _self) revert OnlyImplementation();
        if (verifier.code.length == 0) revert NoCode(verifier);
        bytes32 codehash = verifier.codehash;
        address known = reusableOf[codehash];
        if (known != address(0)) return known;
        reusableOf[codehash] = verifier;
        emit ReusableAdded(codehash, verifier);
        return verifier;
    }

    /// @notice The verifier of the models whose VKA has `vkaDigest`, on `reusable`; made once (`verifierFor`). The
    /// VKA must be registered on `reusable` (`registerVka`) before a proof is checked.
    function clone(address reusable, bytes32 vkaDigest) external returns (address verifier) {
        if (address(this) != _self) revert OnlyImplementation();
        if (reusable.code.length == 0) revert NoCode(reusable);
        verifier = verifierFor(reusable, vkaDigest);
        if (verifier.code.length == 0) {
            Clones.cloneDeterministicWithImmutableArgs(_self, abi.encode(reusable, vkaDigest), bytes32(0));
            emit VerifierCloned(reusable, vkaDigest, verifier);
        }
    }

    function verifierFor(address reusable, bytes32 vkaDigest) public view returns (address) {
        return Clones.predictDeterministicAddressWithImmutableArgs(
            _self, abi.encode(reusable, vkaDigest), bytes32(0), _self
        );
    }

    /// @notice In a clone: `proof` is abi.encode(bytes32[] vka, bytes ezklProof); true when the VKA is the pinned one
    /// and the reusable verifier accepts. A verifier call that ran out of gas reverts (the market then reverts the
    /// fulfilment instead of slashing an honest prover for a low gas limit).
    function verifyProof(bytes calldata proof, uint256[] calldata instances) external returns (bool) {
        if (address(this) == _self) revert OnlyClone();
        (address reusable, bytes32 digest) = abi.decode(Clones.fetchCloneArgs(address(this)), (address, bytes32));
        (bytes32[] memory vka, bytes memory inner) = abi.decode(proof, (bytes32[], bytes));
        if (keccak256(abi.encodePacked(vka)) != digest) return false;
        uint256 before = gasleft();
        (bool ok, bytes memory answer) =
            reusable.call(abi.encodeWithSignature("verifyProof(bytes,uint256[],bytes32[])", inner, instances, vka));
        if (!ok) {
            if (gasleft() <= before / 63) revert VerifierOutOfGas();
            return false;
        }
        // the answer is (bool, bytes32 digest, int256[] rescaled): only its first two words are well formed
        if (answer.length < 64) return false;
        (uint256 valid, bytes32 used) = abi.decode(answer, (uint256, bytes32));
        return valid == 1 && used == digest;
    }
}
