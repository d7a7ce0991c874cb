// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @title SignatureValidator: one eth_call checks any wallet's signature of a hash.
/// @notice Never deployed. Its creation code is run by eth_call with the constructor's arguments ("deployless", as
/// ERC-6492 describes it) and returns one byte: 0x01 for a valid signature, 0x00 otherwise. An EOA's signature is
/// checked with ecrecover, a deployed contract wallet's with ERC-1271 `isValidSignature`, and a counterfactual
/// wallet's (an ERC-6492 signature: abi.encode(factory, factoryCalldata, innerSignature) + the 6492 suffix) by
/// calling its factory first, inside the call, then ERC-1271: nothing is deployed on chain.
contract SignatureValidator {
    bytes32 private constant ERC6492_SUFFIX = 0x6492649264926492649264926492649264926492649264926492649264926492;

    constructor(address signer, bytes32 hash, bytes memory signature) {
        bool valid = _valid(signer, hash, signature);
        assembly ("memory-safe") {
            mstore(0, valid)
            return(31, 1)
        }
    }

    function _valid(address signer, bytes32 hash, bytes memory signature) private returns (bool) {
        uint256 length = signature.length;
        bytes32 suffix;
        if (length >= 32) {
            assembly ("memory-safe") {
                suffix := mload(add(signature, length))
            }
        }
        if (suffix != ERC6492_SUFFIX) {
            return SignatureChecker.isValidSignatureNow(signer, hash, signature);
        }
        assembly ("memory-safe") {
            mstore(signature, sub(length, 32)) // drop the suffix: what is left is the abi-encoded wrapper
        }
        (address factory, bytes memory factoryCalldata, bytes memory inner) =
            abi.decode(signature, (address, bytes, bytes));
        if (signer.code.length == 0) {
            (bool deployed,) = factory.call(factoryCalldata);
            if (!deployed || signer.code.length == 0) return false;
        }
        return SignatureChecker.isValidERC1271SignatureNow(signer, hash, inner);
    }
}
