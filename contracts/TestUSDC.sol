// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC3009} from "@openzeppelin/contracts/token/ERC20/extensions/draft-ERC3009.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title NamedTestUSDC: a stand-in for USDC with the EIP-712 domain given at deployment. NEVER deploy it outside a
/// local devnet or a local rehearsal chain.
/// @notice ERC-20 with 6 decimals and EIP-3009 (transfer/receive with authorization, cancel). The EIP-712 domain
/// name and version are constructor arguments: Circle's FiatTokenV2 uses "USD Coin"/"2" on most chains and
/// "USDC"/"2" on some testnets (Base Sepolia): a local rehearsal of such a chain places this token's code at the
/// canonical USDC address with that chain's domain. The owner mints freely.
/// Besides the (v, r, s) forms, the `bytes signature` forms of FiatTokenV2_2 are provided
/// (EOA or ERC-1271 signers), so x402 facilitators find the functions they expect.
contract NamedTestUSDC is ERC3009, Ownable {
    constructor(address initialOwner, string memory domainName, string memory domainVersion)
        ERC20(domainName, "USDC")
        EIP712(domainName, domainVersion)
        Ownable(initialOwner)
    {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice EIP-712 domain version, as FiatTokenV2 exposes it.
    function version() external view returns (string memory) {
        return _EIP712Version();
    }

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    /// @notice Accounts the token refuses to move money from or to, as Circle's USDC blacklists them (the owner
    /// sets them): what a payout to a blocklisted owner meets on a real chain.
    mapping(address account => bool) public blocked;

    error AccountBlocked(address account);

    function setBlocked(address account, bool isBlocked) external onlyOwner {
        blocked[account] = isBlocked;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blocked[from]) revert AccountBlocked(from);
        if (blocked[to]) revert AccountBlocked(to);
        super._update(from, to, value);
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

/// @title TestUSDC: the devnet's USDC (domain "USD Coin", version "2", like Circle's FiatTokenV2 on most chains).
contract TestUSDC is NamedTestUSDC {
    constructor(address initialOwner) NamedTestUSDC(initialOwner, "USD Coin", "2") {}
}
