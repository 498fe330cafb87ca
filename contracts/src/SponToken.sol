// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title $SPON, the Spheron protocol token (home chain: Base).
/// @notice The whole supply is minted once, at deploy, to the treasury; there is no mint afterwards.
contract SponToken is ERC20 {
    error ZeroTreasury();

    constructor(address treasury, uint256 initialSupply) ERC20("Spheron", "SPON") {
        if (treasury == address(0)) revert ZeroTreasury();
        _mint(treasury, initialSupply);
    }
}
