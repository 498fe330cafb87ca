// What every wallet button shares (top-up, stake, rewards, wallet linking): an injected EIP-1193
// wallet (window.ethereum), its errors in words, a status line, waiting for a receipt, and the
// stake address's transactions (the stake page's buttons, the rewards page's Claim). Loaded before
// the page's own script, which finds it as window.SpheronWallet. No framework.
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

  // The injected wallet, or null once `tell(text, isError)` has said there is none. `otherwise`
  // (optional) is what else the user can do: "…and reload, or <otherwise>."
  function injected(tell, otherwise) {
    var provider = window.ethereum;
    if (provider && typeof provider.request === "function") {
      return provider;
    }
    tell("No browser wallet found. Install a wallet extension (MetaMask, Rabby, Coinbase Wallet…) and reload" +
      (otherwise ? ", or " + otherwise : "") + ".", true);
    return null;
  }

  // A click on an element matching `selector` (or inside one) goes to `handler(element)`.
  function onClick(selector, handler) {
    document.addEventListener("click", function (event) {
      var element = event.target.closest && event.target.closest(selector);
      if (element) {
        event.preventDefault();
        handler(element);
      }
    });
  }

  // A transaction from the provider's stake address, prepared by the server: the button carries it
  // (data-to, data-calldata); its box (`options.box`, a selector) the address (data-address) and the
  // chain (data-chain-id, hex; data-chain-name). The wallet must offer that address and be on that
  // chain; the transaction is sent, then mined. Each step is said in the box's message line
  // (`options.message`), naming the transaction `options.label` ("Claim", "Stake"…); once it is
  // mined, failed on chain, or not mined in time, the line is `options.mined(hash)`,
  // `options.failed(hash)` (an error) or `options.notMined(hash)`.
  async function sendFromStakeAddress(button, options) {
    var box = button.closest(options.box);
    var label = options.label;
    var tell = function (text, isError) {
      say(box, options.message, text, isError);
    };
    var provider = injected(tell);
    if (!provider) {
      return;
    }
    var data = box.dataset;
    button.disabled = true;
    try {
      tell("Asking your wallet for an account…");
      var accounts = await provider.request({ method: "eth_requestAccounts" });
      var from = (accounts || []).find(function (account) {
        return account.toLowerCase() === data.address.toLowerCase();
      });
      if (!from) {
        tell("Your wallet's account is not your stake address " + data.address +
          ": switch to that account in your wallet and try again.", true);
        return;
      }
      await provider.request({ method: "wallet_switchEthereumChain", params: [{ chainId: data.chainId }] });
      var current = await provider.request({ method: "eth_chainId" });
      if (parseInt(current, 16) !== parseInt(data.chainId, 16)) {
        tell("Your wallet is on chain id " + parseInt(current, 16) + ", not " + data.chainName +
          ": switch it and try again.", true);
        return;
      }
      tell("Confirm the " + label.toLowerCase() + " in your wallet…");
      var hash = await provider.request({
        method: "eth_sendTransaction",
        params: [{ from: from, to: button.dataset.to, value: "0x0", data: button.dataset.calldata }],
      });
      tell(label + " sent (" + hash + "). Waiting for it to be mined…");
      var receipt = await waitForReceipt(provider, hash);
      if (!receipt) {
        tell(options.notMined(hash));
      } else if (receipt.status === "0x0") {
        tell(options.failed(hash), true);
      } else {
        tell(options.mined(hash));
      }
    } catch (error) {
      tell(walletError(error, box), true);
    } finally {
      button.disabled = false;
    }
  }

  window.SpheronWallet = {
    sleep: sleep,
    say: say,
    walletError: walletError,
    waitForReceipt: waitForReceipt,
    injected: injected,
    onClick: onClick,
    sendFromStakeAddress: sendFromStakeAddress,
  };
})();
