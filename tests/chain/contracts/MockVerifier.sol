// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title MockVerifier: TEST ONLY stand-in for an EZKL Halo2Verifier (tests/chain only).
/// @notice Accepts the proof `0x01...` (first byte 1) and rejects others; `mode` forces an outcome:
/// 0 = decide by the first proof byte, 1 = always return false, 2 = always revert, 3 = burn all gas,
/// 4 = revert `VerifierOutOfGas()` (what a verifier says when one it calls ran out of gas, e.g. a SharedVerifier clone).
contract MockVerifier {
    uint8 public mode;

    error VerifierOutOfGas();

    function setMode(uint8 newMode) external {
        mode = newMode;
    }

    function verifyProof(bytes calldata proof, uint256[] calldata instances) external view returns (bool) {
        if (mode == 1) return false;
        if (mode == 2) revert("MockVerifier: bad proof");
        if (mode == 3) {
            while (true) {}
        }
        if (mode == 4) revert VerifierOutOfGas();
        return instances.length > 0 && proof.length > 0 && proof[0] == 0x01;
    }
}
