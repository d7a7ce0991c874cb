// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test only: a token whose transfer re-enters a target (the channel contract) with prepared calldata.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public payload;
    bool public reentered;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata payload_) external {
        target = target_;
        payload = payload_;
    }

    function transfer(address to, uint256 amount) public override returns (bool) {
        if (target != address(0) && msg.sender == target) {
            address t = target;
            target = address(0);
            (bool ok, bytes memory reason) = t.call(payload);
            if (!ok) {
                assembly {
                    revert(add(reason, 32), mload(reason))
                }
            }
            reentered = true;
        }
        return super.transfer(to, amount);
    }
}

/// @notice Test only: a deposit collector that hands over tokens it holds (no authorization).
contract PlainCollector {
    function collect(address, address token, uint256 amount, bytes32, bytes calldata) external {
        ERC20(token).transfer(msg.sender, amount);
    }
}

/// @notice Test only: a collector that claims to collect but sends less than asked.
contract ShortCollector {
    function collect(address, address token, uint256 amount, bytes32, bytes calldata) external {
        ERC20(token).transfer(msg.sender, amount / 2);
    }
}
