// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";

/// @title StakeCheckpoints: the AttestationCourt's stake histories, linked rather than inlined.
/// @notice OpenZeppelin's Checkpoints (a value per block, searched by block) as external library functions: the court
/// reaches them by DELEGATECALL on its own storage, and their code (about 1.4 KB) lives once in this library instead of
/// in the court, keeping the court well under EIP-170's 24,576 bytes. The library holds no state and no tokens; it
/// only runs on the storage of the contract that calls it.
library StakeCheckpoints {
    /// @notice The value at the end of block `blockNumber` (0 before the first checkpoint).
    function at(Checkpoints.Trace208 storage trace, uint256 blockNumber) external view returns (uint256) {
        return Checkpoints.upperLookupRecent(trace, uint48(blockNumber));
    }

    /// @notice Record `value` as of the current block (the block's last write wins).
    function set(Checkpoints.Trace208 storage trace, uint256 value) external {
        Checkpoints.push(trace, uint48(block.number), uint208(value));
    }

    /// @notice The latest value (0 when none was recorded).
    function latest(Checkpoints.Trace208 storage trace) external view returns (uint256) {
        return Checkpoints.latest(trace);
    }
}
