// "Pay with wallet" on the top-up page: an injected EIP-1193 wallet (window.ethereum) sends the
// payment the server prepared. The server computes everything that is money or ABI (the amount in
// base units as hex, the calldata, the chain id) and puts it in data- attributes; this script only
// forwards it to the wallet, waits for the transaction to be mined, and posts its hash to the page's
// "check a transaction" form. No framework, no float arithmetic.
(function () {
  "use strict";

  var W = window.SpheronWallet;
  var waitForReceipt = W.waitForReceipt;

  function say(box, text, isError) {
    W.say(box, "[data-wallet-message]", text, isError);
  }

  function checkTransaction(box, hash) {
    var form = document.getElementById("crypto-check-form");
    if (!form) {
      return;
    }
    form.querySelector("[name=chain]").value = box.dataset.chainKey;
    form.querySelector("[name=tx_hash]").value = hash;
    form.requestSubmit();
  }

  async function pay(button) {
    var box = button.closest("[data-wallet]");
    var provider = W.injected(function (text, isError) {
      say(box, text, isError);
    }, "scan the QR code, or send the amount shown to the receiver with your reference");
    if (!provider) {
      return;
    }
    var data = box.dataset;
    button.disabled = true;
    try {
      say(box, "Asking your wallet for an account…");
      var accounts = await provider.request({ method: "eth_requestAccounts" });
      if (!accounts || !accounts.length) {
        say(box, "Your wallet gave no account: unlock it and try again.", true);
        return;
      }
      var from = accounts[0];
      say(box, "Switching your wallet to " + data.chainName + "…");
      await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: data.chainId }] });
      var current = await provider.request({ method: "eth_chainId" });
      if (parseInt(current, 16) !== parseInt(data.chainId, 16)) {
        say(box, "Your wallet is on chain id " + parseInt(current, 16) + ", not " + data.chainName +
          " (" + parseInt(data.chainId, 16) + "). Switch it to " + data.chainName + " and try again.", true);
        return;
      }
      if (data.approveTo) {
        say(box, "Confirm in your wallet: allow the receiver to take the " + data.symbol + "…");
        var approval = await provider.request({
          method: "eth_sendTransaction",
          params: [{ from: from, to: data.approveTo, value: "0x0", data: data.approveCalldata }],
        });
        say(box, "Waiting for the approval to be mined…");
        var approved = await waitForReceipt(provider, approval);
        if (!approved || approved.status === "0x0") {
          say(box, "The approval did not go through (" + approval + "): nothing was paid.", true);
          return;
        }
      }
      say(box, "Confirm the payment in your wallet…");
      var hash = await provider.request({
        method: "eth_sendTransaction",
        params: [{ from: from, to: data.to, value: data.value, data: data.calldata }],
      });
      var shown = box.querySelector("[data-wallet-tx]");
      shown.hidden = false;
      shown.querySelector("code").textContent = hash;
      say(box, "Sent. Waiting for it to be mined…");
      var receipt = await waitForReceipt(provider, hash);
      if (receipt && receipt.status === "0x0") {
        say(box, "The transaction failed on chain: nothing was paid.", true);
        return;
      }
      say(box, receipt ? "Mined. Checking it now; your deposits below show its progress."
        : "Not mined yet. It is checked now and again by the watcher; your deposits below show it once it is.");
      checkTransaction(box, hash);
    } catch (error) {
      say(box, W.walletError(error, box), true);
    } finally {
      button.disabled = false;
    }
  }

  W.onClick("[data-wallet-pay]", pay);
})();
