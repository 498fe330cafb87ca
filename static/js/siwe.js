// "Link with wallet" on /account/wallets/: Sign-In with Ethereum (EIP-4361) with an injected
// EIP-1193 wallet (window.ethereum). The server writes the message (domain, nonce, expiry) for the
// wallet's address and chain; the wallet signs it with personal_sign; the server checks it and
// links the address. No framework.
(function () {
  "use strict";

  var W = window.SpheronWallet;

  function say(slot, text, isError) {
    W.say(slot, "[data-siwe-message]", text, isError);
  }

  function walletError(error) {
    return W.walletError(error, null, "nothing was linked");
  }

  function utf8Hex(text) {
    var bytes = new TextEncoder().encode(text);
    var hex = "0x";
    for (var i = 0; i < bytes.length; i++) {
      hex += bytes[i].toString(16).padStart(2, "0");
    }
    return hex;
  }

  async function post(box, url, body) {
    var response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": box.dataset.csrf },
      body: JSON.stringify(body),
    });
    var answer = null;
    try {
      answer = await response.json();
    } catch (ignored) {
      answer = null;
    }
    if (!response.ok) {
      var error = new Error((answer && answer.message) || ("The server answered " + response.status + "."));
      error.fromServer = true;
      throw error;
    }
    return answer;
  }

  async function link(button) {
    var box = button.closest("[data-siwe]");
    var slot = button.closest("[data-siwe-slot]");
    var purpose = slot.dataset.purpose;
    var provider = W.injected(function (text, isError) { say(slot, text, isError); }, "link the address with the API");
    if (!provider) {
      return;
    }
    button.disabled = true;
    try {
      say(slot, "Asking your wallet for an account…");
      var accounts = await provider.request({ method: "eth_requestAccounts" });
      if (!accounts || !accounts.length) {
        say(slot, "Your wallet gave no account: unlock it and try again.", true);
        return;
      }
      var address = accounts[0];
      var chainId = parseInt(await provider.request({ method: "eth_chainId" }), 16);
      var issued = await post(box, box.dataset.nonceUrl, { address: address, chain_id: chainId, purpose: purpose });
      say(slot, "Sign the message in your wallet (it costs nothing)…");
      var signature = await provider.request({ method: "personal_sign", params: [utf8Hex(issued.message), address] });
      say(slot, "Checking the signature…");
      var linked = await post(box, box.dataset.linkUrl, { message: issued.message, signature: signature, purpose: purpose });
      var shown = slot.querySelector("[data-siwe-address]");
      shown.textContent = linked.address;
      shown.classList.remove("muted");
      say(slot, "Linked " + linked.address + " as your " + purpose + " address.");
    } catch (error) {
      say(slot, error && error.fromServer ? error.message : walletError(error), true);
    } finally {
      button.disabled = false;
    }
  }

  W.onClick("[data-siwe-link]", link);
})();
