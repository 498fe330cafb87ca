// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title $SPON stake of Spheron providers, with a cool-down on unstaking and slashing.
/// @notice A provider stakes $SPON (approved to this contract first); only the active stake counts
/// for matching. `requestUnstake` moves stake from active to pending, where it waits out the
/// cool-down set at deploy (14 days in production, minutes on a devnet) and can still be slashed;
/// `withdraw` then sends every pending amount whose unlock time has passed. A slasher (the
/// platform's key) takes stake to the treasury, active stake first, then pending.
/// @dev The token and the cool-down are set once, in the constructor. They are storage, not
/// immutables, so the runtime code on chain is the committed build's `deployedBytecode`.
contract SponStaking is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");
    /// @notice At most this many unstake requests wait per provider; `withdraw` frees them.
    uint256 public constant MAX_PENDING_UNSTAKES = 32;

    struct PendingUnstake {
        uint256 amount;
        uint64 unlockAt;
    }

    event Staked(address indexed provider, uint256 amount, uint256 newActive);
    event UnstakeRequested(address indexed provider, uint256 amount, uint64 unlockAt);
    event Withdrawn(address indexed provider, uint256 amount);
    event Slashed(address indexed provider, uint256 amount, bytes32 indexed reasonHash);
    event TreasuryChanged(address indexed previousTreasury, address indexed newTreasury);

    error ZeroAmount();
    error ZeroAddress();
    error InsufficientActiveStake(uint256 active, uint256 requested);
    error NothingToWithdraw();
    error NothingToSlash(address provider);
    error TooManyPendingUnstakes(uint256 limit);

    IERC20 public spon;
    uint64 public cooldownSeconds;
    address public treasury;
    uint256 public totalActive;
    uint256 public totalPending;

    mapping(address provider => uint256 amount) private _active;
    mapping(address provider => PendingUnstake[] requests) private _pending;

    constructor(IERC20 sponToken, address initialTreasury, uint64 cooldown, address admin) {
        if (address(sponToken) == address(0) || initialTreasury == address(0) || admin == address(0)) {
            revert ZeroAddress();
        }
        spon = sponToken;
        cooldownSeconds = cooldown;
        treasury = initialTreasury;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        emit TreasuryChanged(address(0), initialTreasury);
    }

    /// @notice Stakes `amount` of $SPON from the caller (approved to this contract first).
    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        // Credit what arrived, not what was asked (the same rule as PaymentReceiver).
        uint256 before = spon.balanceOf(address(this));
        spon.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = spon.balanceOf(address(this)) - before;
        if (received == 0) revert ZeroAmount();
        uint256 newActive = _active[msg.sender] + received;
        _active[msg.sender] = newActive;
        totalActive += received;
        emit Staked(msg.sender, received, newActive);
    }

    /// @notice Moves `amount` of the caller's active stake to pending, withdrawable after the
    /// cool-down. Pending stake no longer counts as stake but can still be slashed.
    function requestUnstake(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 active = _active[msg.sender];
        if (amount > active) revert InsufficientActiveStake(active, amount);
        PendingUnstake[] storage pending = _pending[msg.sender];
        if (pending.length >= MAX_PENDING_UNSTAKES) revert TooManyPendingUnstakes(MAX_PENDING_UNSTAKES);
        uint64 unlockAt = uint64(block.timestamp) + cooldownSeconds;
        _active[msg.sender] = active - amount;
        totalActive -= amount;
        totalPending += amount;
        pending.push(PendingUnstake({amount: amount, unlockAt: unlockAt}));
        emit UnstakeRequested(msg.sender, amount, unlockAt);
    }

    /// @notice Sends the caller every pending amount whose unlock time has passed.
    function withdraw() external nonReentrant {
        PendingUnstake[] storage pending = _pending[msg.sender];
        uint256 amount;
        uint256 kept;
        uint256 length = pending.length;
        for (uint256 i = 0; i < length; ++i) {
            PendingUnstake memory request = pending[i];
            if (request.unlockAt <= block.timestamp) {
                amount += request.amount;
            } else {
                if (kept != i) pending[kept] = request;
                ++kept;
            }
        }
        if (amount == 0) revert NothingToWithdraw();
        while (pending.length > kept) pending.pop();
        totalPending -= amount;
        spon.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Takes up to `amount` of `provider`'s stake to the treasury: active stake first,
    /// then pending unstakes (the latest first). If the provider holds less than `amount`, all of
    /// it is taken; `Slashed` says how much was. `reasonHash` names the platform's decision.
    function slash(address provider, uint256 amount, bytes32 reasonHash)
        external
        onlyRole(SLASHER_ROLE)
        nonReentrant
    {
        if (amount == 0) revert ZeroAmount();
        uint256 active = _active[provider];
        uint256 fromActive = amount < active ? amount : active;
        uint256 remaining = amount - fromActive;
        if (fromActive != 0) {
            _active[provider] = active - fromActive;
            totalActive -= fromActive;
        }
        uint256 fromPending;
        PendingUnstake[] storage pending = _pending[provider];
        while (remaining != 0 && pending.length != 0) {
            PendingUnstake storage last = pending[pending.length - 1];
            if (last.amount <= remaining) {
                remaining -= last.amount;
                fromPending += last.amount;
                pending.pop();
            } else {
                last.amount -= remaining;
                fromPending += remaining;
                remaining = 0;
            }
        }
        totalPending -= fromPending;
        uint256 slashed = fromActive + fromPending;
        if (slashed == 0) revert NothingToSlash(provider);
        spon.safeTransfer(treasury, slashed);
        emit Slashed(provider, slashed, reasonHash);
    }

    function setTreasury(address newTreasury) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newTreasury == address(0)) revert ZeroAddress();
        emit TreasuryChanged(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice The stake that counts: staked and not under cool-down.
    function activeStake(address provider) external view returns (uint256) {
        return _active[provider];
    }

    /// @notice The provider's pending unstakes, oldest first: amounts and unlock times.
    function pendingUnstakes(address provider)
        external
        view
        returns (uint256[] memory amounts, uint64[] memory unlockTimes)
    {
        PendingUnstake[] storage pending = _pending[provider];
        amounts = new uint256[](pending.length);
        unlockTimes = new uint64[](pending.length);
        for (uint256 i = 0; i < pending.length; ++i) {
            amounts[i] = pending[i].amount;
            unlockTimes[i] = pending[i].unlockAt;
        }
    }

    /// @notice The sum of the provider's pending unstakes (under cool-down or ready to withdraw).
    function pendingStake(address provider) external view returns (uint256 total) {
        PendingUnstake[] storage pending = _pending[provider];
        for (uint256 i = 0; i < pending.length; ++i) total += pending[i].amount;
    }
}
