// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title Multicall3 (the read batching the x402 SDK uses): tryAggregate only.
/// @notice The devnet installs it at the canonical Multicall3 address; public chains already have Multicall3
///         there. Calls are made in order; with requireSuccess a failing call reverts the whole batch.
contract Multicall3 {
    struct Call {
        address target;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function tryAggregate(bool requireSuccess, Call[] calldata calls) external payable returns (Result[] memory results) {
        results = new Result[](calls.length);
        for (uint256 i = 0; i < calls.length; i++) {
            (bool ok, bytes memory data) = calls[i].target.call(calls[i].callData);
            if (requireSuccess) {
                require(ok, "Multicall3: call failed");
            }
            results[i] = Result(ok, data);
        }
    }
}
