// The stake page's wallet buttons: an injected EIP-1193 wallet (window.ethereum) sends the
// transaction the server prepared (approve, stake, requestUnstake, withdraw). The server computes
// the calldata and the addresses and puts them in data- attributes; this script only checks the
// wallet's account and chain, forwards the transaction, waits for it to be mined and says so (the
// page counts it once the indexer sees it final). No framework, no number arithmetic.
(function () {
  "use strict";

  var W = window.SpheronWallet;
  var waitForReceipt = W.waitForReceipt;

  function say(box, text, isError) {
    W.say(box, "[data-stake-message]", text, isError);
  }

  function walletError(error, box) {
    return W.walletError(error, box);
  }

  async function send(button) {
    var box = button.closest("[data-stake-wallet]");
    var provider = window.ethereum;
    if (!provider || typeof provider.request !== "function") {
      say(box, "No browser wallet found. Install a wallet extension (MetaMask, Rabby, Coinbase Wallet…) and reload.", true);
      return;
    }
    var data = box.dataset;
    var label = button.dataset.label;
    button.disabled = true;
    try {
      say(box, "Asking your wallet for an account…");
      var accounts = await provider.request({ method: "eth_requestAccounts" });
      var from = (accounts || []).find(function (account) {
        return account.toLowerCase() === data.address.toLowerCase();
      });
      if (!from) {
        say(box, "Your wallet's account is not your stake address " + data.address +
          ": switch to that account in your wallet and try again.", true);
        return;
      }
      await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: data.chainId }] });
      var current = await provider.request({ method: "eth_chainId" });
      if (parseInt(current, 16) !== parseInt(data.chainId, 16)) {
        say(box, "Your wallet is on chain id " + parseInt(current, 16) + ", not " + data.chainName +
          ": switch it and try again.", true);
        return;
      }
      say(box, "Confirm the " + label.toLowerCase() + " in your wallet…");
      var hash = await provider.request({
        method: "eth_sendTransaction",
        params: [{ from: from, to: button.dataset.to, value: "0x0", data: button.dataset.calldata }],
      });
      say(box, label + " sent (" + hash + "). Waiting for it to be mined…");
      var receipt = await waitForReceipt(provider, hash);
      if (!receipt) {
        say(box, label + " not mined yet (" + hash + "); this page shows it once it is final.");
        return;
      }
      if (receipt.status === "0x0") {
        say(box, label + " failed on chain (" + hash + "): nothing changed.", true);
        return;
      }
      say(box, label + " mined (" + hash + "). It counts here once final; reload in a few seconds.");
    } catch (error) {
      say(box, walletError(error, box), true);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-stake-send]");
    if (button) {
      event.preventDefault();
      send(button);
    }
  });
})();
