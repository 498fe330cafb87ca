// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title The match commitments of Spheron leases, published once per lease.
/// @notice The platform's recorder publishes each lease's commitment (the hash of its match proof)
/// under the lease's 32-byte id; anyone can then check a proof against `commitmentOf`. A
/// commitment is written once and never changed: a second record of the same lease reverts.
/// @dev `recordMany` is all or nothing: if any lease of the batch is already recorded (or twice
/// in the batch), the whole batch reverts with `AlreadyRecorded`, so the recorder learns of the
/// conflict instead of having a silently partial batch; it re-sends the batch without that lease.
contract LeaseRegistry is AccessControl {
    bytes32 public constant RECORDER_ROLE = keccak256("RECORDER_ROLE");

    event LeaseRecorded(bytes32 indexed leaseId, bytes32 commitment, address recorder);

    error ZeroAddress();
    error ZeroLeaseId();
    error ZeroCommitment(bytes32 leaseId);
    error AlreadyRecorded(bytes32 leaseId);
    error LengthMismatch(uint256 leaseIds, uint256 commitments);
    error EmptyBatch();

    mapping(bytes32 leaseId => bytes32 commitment) private _commitments;

    constructor(address admin) {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Records the commitment of one lease; reverts if the lease has one already.
    function record(bytes32 leaseId, bytes32 commitment) external onlyRole(RECORDER_ROLE) {
        _record(leaseId, commitment);
    }

    /// @notice Records a batch of leases (`leaseIds[i]` → `commitments[i]`), all or nothing.
    function recordMany(bytes32[] calldata leaseIds, bytes32[] calldata commitments)
        external
        onlyRole(RECORDER_ROLE)
    {
        if (leaseIds.length != commitments.length) revert LengthMismatch(leaseIds.length, commitments.length);
        if (leaseIds.length == 0) revert EmptyBatch();
        for (uint256 i = 0; i < leaseIds.length; ++i) {
            _record(leaseIds[i], commitments[i]);
        }
    }

    /// @notice The commitment recorded for `leaseId`, or zero if none is.
    function commitmentOf(bytes32 leaseId) external view returns (bytes32) {
        return _commitments[leaseId];
    }

    function _record(bytes32 leaseId, bytes32 commitment) private {
        if (leaseId == bytes32(0)) revert ZeroLeaseId();
        if (commitment == bytes32(0)) revert ZeroCommitment(leaseId);
        if (_commitments[leaseId] != bytes32(0)) revert AlreadyRecorded(leaseId);
        _commitments[leaseId] = commitment;
        emit LeaseRecorded(leaseId, commitment, msg.sender);
    }
}
