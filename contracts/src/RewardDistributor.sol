// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title $SPON rewards of Spheron providers, claimed with a Merkle proof of a cumulative amount.
/// @notice After each era the platform publishes a Merkle tree of every provider address's
/// cumulative rewards (all eras so far) and its root-setter sets the tree's root here; a new root
/// replaces the old one. A claim proves `(account, cumulativeAmount)` against the current root and
/// pays `cumulativeAmount − claimed[account]`, so one claim collects every era not yet claimed.
/// Anyone may submit the claim of an account: the tokens always go to the account itself.
/// @dev The tree is OpenZeppelin's StandardMerkleTree (@openzeppelin/merkle-tree) of
/// ["address", "uint256"] values: leaf = keccak256(bytes.concat(keccak256(abi.encode(account,
/// cumulativeAmount)))), pairs hashed sorted (spheron_sdk.rewards_tree builds the same tree). The
/// token is storage, not an immutable, so the runtime code on chain is the committed build's
/// `deployedBytecode`.
contract RewardDistributor is AccessControl {
    using SafeERC20 for IERC20;

    bytes32 public constant ROOT_SETTER_ROLE = keccak256("ROOT_SETTER_ROLE");

    event RootSet(bytes32 root, uint256 indexed era);
    event Claimed(address indexed account, uint256 amount, uint256 cumulativeAmount);

    error ZeroAddress();
    error ZeroRoot();
    /// @dev A root for an earlier era than the current one's: an old tree would be set back.
    error EraBeforeCurrent(uint256 currentEra, uint256 era);
    error InvalidProof(address account, uint256 cumulativeAmount);
    error NothingToClaim(address account, uint256 cumulativeAmount, uint256 alreadyClaimed);

    IERC20 public spon;
    /// @notice The root of the current tree (zero until the first `setRoot`) and its era.
    bytes32 public merkleRoot;
    uint256 public era;
    /// @notice The cumulative amount already paid to each account.
    mapping(address account => uint256 amount) public claimed;

    constructor(IERC20 sponToken, address admin) {
        if (address(sponToken) == address(0) || admin == address(0)) revert ZeroAddress();
        spon = sponToken;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Replaces the tree: claims prove against `root` from now on. `newEra` may repeat the
    /// current era (a corrected tree) but not go back to an earlier one.
    function setRoot(bytes32 root, uint256 newEra) external onlyRole(ROOT_SETTER_ROLE) {
        if (root == bytes32(0)) revert ZeroRoot();
        if (newEra < era) revert EraBeforeCurrent(era, newEra);
        merkleRoot = root;
        era = newEra;
        emit RootSet(root, newEra);
    }

    /// @notice Pays `account` what the current tree owes it beyond what it has claimed already.
    /// `cumulativeAmount` is the account's amount in the tree and `proof` its Merkle proof.
    function claim(address account, uint256 cumulativeAmount, bytes32[] calldata proof) external {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(account, cumulativeAmount))));
        if (!MerkleProof.verifyCalldata(proof, merkleRoot, leaf)) revert InvalidProof(account, cumulativeAmount);
        uint256 already = claimed[account];
        if (cumulativeAmount <= already) revert NothingToClaim(account, cumulativeAmount, already);
        uint256 amount = cumulativeAmount - already;
        // Recorded before the transfer (checks, effects, interactions): a re-entered claim finds
        // nothing due.
        claimed[account] = cumulativeAmount;
        spon.safeTransfer(account, amount);
        emit Claimed(account, amount, cumulativeAmount);
    }
}
