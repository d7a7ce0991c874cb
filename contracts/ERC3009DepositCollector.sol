// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @notice The ERC-3009 `receiveWithAuthorization` of USDC-like tokens (signature as bytes).
interface IERC3009Receive {
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external;
}

/// @title The ERC-3009 deposit collector of x402 batch-settlement channels.
/// @notice Only the channel contract calls it: it receives the payer's authorized transfer (`to` = this collector,
///         nonce = keccak256(abi.encode(channelId, salt)): the authorization is bound to one channel) and hands the
///         tokens to the channel contract, which counts what its balance gained.
contract ERC3009DepositCollector {
    using SafeERC20 for IERC20;

    address public immutable settlement;

    error OnlySettlement();

    constructor(address settlement_) {
        settlement = settlement_;
    }

    /// @param data abi.encode(uint256 validAfter, uint256 validBefore, uint256 salt, bytes signature)
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata data) external {
        if (msg.sender != settlement) revert OnlySettlement();
        (uint256 validAfter, uint256 validBefore, uint256 salt, bytes memory signature) =
            abi.decode(data, (uint256, uint256, uint256, bytes));
        bytes32 nonce = keccak256(abi.encode(channelId, salt));
        IERC3009Receive(token).receiveWithAuthorization(
            payer, address(this), amount, validAfter, validBefore, nonce, signature
        );
        IERC20(token).safeTransfer(settlement, amount);
    }
}
