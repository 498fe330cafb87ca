// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title Receives top-ups for Spheron accounts, in the native token or an allowed ERC-20.
/// @notice Every payment names the account it is for (`accountRef`, the user's 32-byte deposit
/// reference); the off-chain watcher credits `Deposit` events after finality. A payment without
/// a reference cannot be attributed, so plain transfers revert instead of being accepted.
contract PaymentReceiver is Ownable, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @dev `token` is address(0) for the native token.
    event Deposit(bytes32 indexed accountRef, address indexed payer, address token, uint256 amount);
    event TokenAllowed(address indexed token, bool allowed);
    event TreasuryChanged(address indexed previousTreasury, address indexed newTreasury);
    event Withdrawal(address indexed token, address indexed treasury, uint256 amount);

    error ZeroAmount();
    error ZeroAccountRef();
    error ZeroAddress();
    error TokenNotAllowed(address token);
    error NoReference();
    error NativeTransferFailed();

    address public treasury;
    mapping(address token => bool allowed) public tokenAllowed;

    constructor(address initialOwner, address initialTreasury) Ownable(initialOwner) {
        if (initialTreasury == address(0)) revert ZeroAddress();
        treasury = initialTreasury;
        emit TreasuryChanged(address(0), initialTreasury);
    }

    /// @notice Pays `msg.value` of the native token to the account `accountRef`.
    function deposit(bytes32 accountRef) external payable {
        if (msg.value == 0) revert ZeroAmount();
        if (accountRef == bytes32(0)) revert ZeroAccountRef();
        emit Deposit(accountRef, msg.sender, address(0), msg.value);
    }

    /// @notice Pays `amount` of an allowed `token` (approved to this contract first) to `accountRef`.
    function depositToken(address token, uint256 amount, bytes32 accountRef) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (accountRef == bytes32(0)) revert ZeroAccountRef();
        if (!tokenAllowed[token]) revert TokenNotAllowed(token);
        // Credit what arrived, not what was asked: a fee-on-transfer token delivers less.
        uint256 before = IERC20(token).balanceOf(address(this));
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        if (received == 0) revert ZeroAmount();
        emit Deposit(accountRef, msg.sender, token, received);
    }

    function setTokenAllowed(address token, bool allowed) external onlyOwner {
        if (token == address(0)) revert ZeroAddress();
        tokenAllowed[token] = allowed;
        emit TokenAllowed(token, allowed);
    }

    function setTreasury(address newTreasury) external onlyOwner {
        if (newTreasury == address(0)) revert ZeroAddress();
        emit TreasuryChanged(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice Sends this contract's whole balance of `token` (native if address(0)) to the treasury.
    function withdraw(address token) external onlyOwner nonReentrant {
        address to = treasury;
        uint256 amount;
        if (token == address(0)) {
            amount = address(this).balance;
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert NativeTransferFailed();
        } else {
            amount = IERC20(token).balanceOf(address(this));
            IERC20(token).safeTransfer(to, amount);
        }
        emit Withdrawal(token, to, amount);
    }

    receive() external payable {
        revert NoReference();
    }

    fallback() external payable {
        revert NoReference();
    }
}
