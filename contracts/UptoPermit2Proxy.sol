// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Permit2} from "./Permit2.sol";

/// @title UptoPermit2Proxy: the spender of x402 `upto` payments, written for this project's devnet.
/// @notice Only for a local devnet: on public chains x402 deploys its upto proxy at
/// 0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002; the devnet places this build's runtime code there (`chain/permit2.py`),
/// so the x402 SDK's `upto` client, facilitator and typed data work unchanged.
/// A payer signs a Permit2 witness transfer naming this proxy as spender, a maximum amount, and a witness
/// (to, facilitator, validAfter). The facilitator it names, and only that one, settles what the call used: any amount
/// up to the maximum, to the witness's recipient (the proxy never chooses where the money goes), once (the Permit2
/// nonce), from validAfter until the permit's deadline. No state, no constructor, no immutables.
contract UptoPermit2Proxy {
    struct Witness {
        address to;
        address facilitator;
        uint256 validAfter;
    }

    Permit2 public constant PERMIT2 = Permit2(0x000000000022D473030F116dDEE9F6B43aC78BA3);
    bytes32 public constant WITNESS_TYPEHASH = keccak256("Witness(address to,address facilitator,uint256 validAfter)");
    string public constant WITNESS_TYPE_STRING =
        "Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)";

    event Settled(address indexed owner, address indexed to, address indexed token, uint256 amount, uint256 nonce);

    error UnauthorizedFacilitator();
    error InvalidOwner();
    error InvalidDestination();
    error PaymentTooEarly();
    error AmountExceedsPermitted();

    /// @notice Move `amount` (at most the permitted maximum) from `owner` to `witness.to`; only `witness.facilitator`
    /// may call it.
    function settle(
        Permit2.PermitTransferFrom calldata permit,
        uint256 amount,
        address owner,
        Witness calldata witness,
        bytes calldata signature
    ) external {
        if (msg.sender != witness.facilitator) revert UnauthorizedFacilitator();
        if (owner == address(0)) revert InvalidOwner();
        if (witness.to == address(0)) revert InvalidDestination();
        if (block.timestamp < witness.validAfter) revert PaymentTooEarly();
        if (amount > permit.permitted.amount) revert AmountExceedsPermitted();
        bytes32 witnessHash = keccak256(abi.encode(WITNESS_TYPEHASH, witness.to, witness.facilitator, witness.validAfter));
        PERMIT2.permitWitnessTransferFrom(
            permit, Permit2.SignatureTransferDetails(witness.to, amount), owner, witnessHash, WITNESS_TYPE_STRING,
            signature
        );
        emit Settled(owner, witness.to, permit.permitted.token, amount, permit.nonce);
    }
}
