// What every wallet button shares (top-up, stake, wallet linking): an injected EIP-1193 wallet
// (window.ethereum), its errors in words, a status line, waiting for a receipt. Loaded before the
// page's own script, which finds it as window.SpheronWallet. No framework.
(function () {
  "use strict";

  var RECEIPT_POLL_MS = 500;
  var RECEIPT_WAIT_MS = 180000;

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  // The message line (`selector`) inside `box`: the text, and red when it is an error.
  function say(box, selector, text, isError) {
    var message = box.querySelector(selector);
    message.textContent = text;
    message.classList.toggle("errorlist", Boolean(isError));
  }

  // A wallet error in words. `box` (optional) names the chain: data-chain-name, data-chain-id (hex);
  // `nothing` ends the rejection sentence ("nothing was sent").
  function walletError(error, box, nothing) {
    var code = error && error.code;
    if (code === 4001) {
      return "You rejected the request in your wallet: " + (nothing || "nothing was sent") + ".";
    }
    if (code === 4902 && box) {
      return "Your wallet does not know " + box.dataset.chainName + " (chain id " +
        parseInt(box.dataset.chainId, 16) + "). Add the network to your wallet, then try again.";
    }
    if (code === -32002) {
      return "Your wallet already has a request waiting: open it and answer that first.";
    }
    return "The wallet reported an error: " + ((error && error.message) || String(error));
  }

  async function waitForReceipt(provider, hash) {
    var deadline = Date.now() + RECEIPT_WAIT_MS;
    while (Date.now() < deadline) {
      var receipt = await provider.request({ method: "eth_getTransactionReceipt", params: [hash] });
      if (receipt && receipt.blockNumber) {
        return receipt;
      }
      await sleep(RECEIPT_POLL_MS);
    }
    return null;
  }

  window.SpheronWallet = { sleep: sleep, say: say, walletError: walletError, waitForReceipt: waitForReceipt };
})();
