// The rewards page's Claim button: an injected EIP-1193 wallet (window.ethereum) sends
// RewardDistributor.claim(address, cumulative, proof) from the provider's stake address. The server
// prepares the calldata and the addresses (data- attributes); this script checks the wallet's
// account and chain, forwards the transaction, waits for it to be mined and says so:
// SpheronWallet.sendFromStakeAddress (eip1193.js).
(function () {
  "use strict";

  var W = window.SpheronWallet;

  W.onClick("[data-rewards-claim]", function (button) {
    W.sendFromStakeAddress(button, {
      box: "[data-rewards-wallet]",
      message: "[data-rewards-message]",
      label: "Claim",
      notMined: function (hash) {
        return "Claim not mined yet (" + hash + "); reload this page later to see it.";
      },
      failed: function (hash) {
        return "The claim failed on chain (" + hash + "): nothing was paid. Reload the page: it may have been claimed already.";
      },
      mined: function (hash) {
        return "Claimed (" + hash + "): the $SPON is in your stake address. Reload to see the new balance.";
      },
    });
  });
})();
