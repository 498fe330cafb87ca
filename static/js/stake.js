// The stake page's wallet buttons: an injected EIP-1193 wallet (window.ethereum) sends the
// transaction the server prepared (approve, stake, requestUnstake, withdraw). The server computes
// the calldata and the addresses and puts them in data- attributes; this script only checks the
// wallet's account and chain, forwards the transaction, waits for it to be mined and says so (the
// page counts it once the indexer sees it final): SpheronWallet.sendFromStakeAddress (eip1193.js).
// No framework, no number arithmetic.
(function () {
  "use strict";

  var W = window.SpheronWallet;

  W.onClick("[data-stake-send]", function (button) {
    var label = button.dataset.label;
    W.sendFromStakeAddress(button, {
      box: "[data-stake-wallet]",
      message: "[data-stake-message]",
      label: label,
      notMined: function (hash) {
        return label + " not mined yet (" + hash + "); this page shows it once it is final.";
      },
      failed: function (hash) {
        return label + " failed on chain (" + hash + "): nothing changed.";
      },
      mined: function (hash) {
        return label + " mined (" + hash + "). It counts here once final; reload in a few seconds.";
      },
    });
  });
})();
