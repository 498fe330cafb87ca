// The rewards page's Claim button: an injected EIP-1193 wallet (window.ethereum) sends
// RewardDistributor.claim(address, cumulative, proof) from the provider's stake address. The server
// prepares the calldata and the addresses (data- attributes); this script checks the wallet's
// account and chain, forwards the transaction, waits for it to be mined and says so.
(function () {
  "use strict";

  var W = window.SpheronWallet;

  function say(box, text, isError) {
    W.say(box, "[data-rewards-message]", text, isError);
  }

  async function claim(button) {
    var box = button.closest("[data-rewards-wallet]");
    var provider = window.ethereum;
    if (!provider || typeof provider.request !== "function") {
      say(box, "No browser wallet found. Install a wallet extension (MetaMask, Rabby, Coinbase Wallet…) and reload.", true);
      return;
    }
    var data = box.dataset;
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
      say(box, "Confirm the claim in your wallet…");
      var hash = await provider.request({
        method: "eth_sendTransaction",
        params: [{ from: from, to: button.dataset.to, value: "0x0", data: button.dataset.calldata }],
      });
      say(box, "Claim sent (" + hash + "). Waiting for it to be mined…");
      var receipt = await W.waitForReceipt(provider, hash);
      if (!receipt) {
        say(box, "Claim not mined yet (" + hash + "); reload this page later to see it.");
        return;
      }
      if (receipt.status === "0x0") {
        say(box, "The claim failed on chain (" + hash + "): nothing was paid. Reload the page: it may have been claimed already.", true);
        return;
      }
      say(box, "Claimed (" + hash + "): the $SPON is in your stake address. Reload to see the new balance.");
    } catch (error) {
      say(box, W.walletError(error, box), true);
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-rewards-claim]");
    if (button) {
      event.preventDefault();
      claim(button);
    }
  });
})();
