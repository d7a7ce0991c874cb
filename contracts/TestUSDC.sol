// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title TestUSDC: a devnet stand-in for USDC. NEVER deploy it outside a local devnet.
/// @notice ERC-20 with 6 decimals and EIP-3009 (transfer/receive with authorization, cancel), EIP-712
/// domain name "USD Coin", version "2" like Circle's FiatTokenV2. The owner mints freely.
/// Besides the (v, r, s) forms, the `bytes signature` forms of FiatTokenV2_2 are provided
/// (EOA or ERC-1271 signers), so x402 facilitators find the functions they expect.
contract TestUSDC is ERC3009, Ownable {
    constructor(address initialOwner) ERC20("USD Coin", "USDC") EIP712("USD Coin", "2") Ownable(initialOwner) {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice EIP-712 domain version, as FiatTokenV2 exposes it.
    function version() external pure returns (string memory) {
        return "2";
    }

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce)
        );
        _requireSigner(from, structHash, signature);
        _transferWithAuthorization(from, to, value, validAfter, validBefore, nonce);
    }

    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce)
        );
        _requireSigner(from, structHash, signature);
        require(to == _msgSender(), ERC20InvalidReceiver(to));
        _transferWithAuthorization(from, to, value, validAfter, validBefore, nonce);
    }

    function _requireSigner(address signer, bytes32 structHash, bytes memory signature) private view {
        bool ok = SignatureChecker.isValidSignatureNow(signer, _hashTypedDataV4(structHash), signature);
        require(ok, ERC3009InvalidSignature());
    }
}
