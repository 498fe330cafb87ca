// Stripe's Card Element on the two card pages: the card top-up (a PaymentIntent, confirmed with
// stripe.confirmCardPayment) and saving a card for auto-reload (a SetupIntent, confirmCardSetup).
// The server puts everything in data- attributes on the form: data-stripe-mode ("payment" or
// "setup"), the publishable key, the intent's client secret and the return URL. Stripe.js itself
// comes from settings.STRIPE_JS_URL in a <script> just before this one.
//
// On success the browser goes to the return URL with the query parameters Stripe adds when it
// redirects there itself ({payment,setup}_intent, ..._client_secret, redirect_status), so the
// return views work the same either way; they read the intent from Stripe, never trust these.
// A refusal (a declined card, a failed 3D Secure check) is shown in the form's role=alert message
// and the button is enabled again for another try.
(function () {
  "use strict";

  var LOAD_FAILED = "Stripe's card form could not be loaded. Check your connection and reload the page.";
  var FAILED = "The card could not be confirmed. Please try again.";
  var form = document.querySelector("form[data-stripe-mode]");
  if (!form) {
    return;
  }
  var mode = form.dataset.stripeMode === "setup" ? "setup" : "payment";
  var button = form.querySelector("button[type=submit]");
  var message = form.querySelector("[role=alert]");
  var secret = form.dataset.clientSecret;

  function show(text) {
    message.textContent = text;
    button.disabled = false;
  }

  var stripe, card;
  try {
    if (typeof window.Stripe !== "function") {
      throw new Error("Stripe.js is not loaded");
    }
    stripe = window.Stripe(form.dataset.publishableKey);
    card = stripe.elements().create("card");
    card.mount(form.querySelector("[data-card-element]"));
  } catch (error) {
    message.textContent = LOAD_FAILED;
    button.disabled = true;
    return;
  }
  // Stripe.js reports an incomplete or invalid number as the customer types.
  card.on("change", function (event) {
    message.textContent = event && event.error ? event.error.message : "";
  });

  function returnTo(intent) {
    var url = new URL(form.dataset.returnUrl, window.location.href);
    url.searchParams.set(mode + "_intent", intent.id);
    url.searchParams.set(mode + "_intent_client_secret", secret);
    url.searchParams.set("redirect_status", intent.status === "processing" ? "processing" : "succeeded");
    window.location.assign(url.toString());
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) {
      return;
    }
    button.disabled = true;
    message.textContent = "";
    var data = { payment_method: { card: card } };
    var confirming =
      mode === "setup" ? stripe.confirmCardSetup(secret, data) : stripe.confirmCardPayment(secret, data);
    Promise.resolve(confirming).then(
      function (result) {
        if (!result || result.error) {
          show((result && result.error && result.error.message) || FAILED);
          return;
        }
        var intent = mode === "setup" ? result.setupIntent : result.paymentIntent;
        // "processing": the bank answers later; the return page waits for Stripe's webhook.
        if (!intent || (intent.status !== "succeeded" && intent.status !== "processing")) {
          var refusal = intent && (intent.last_payment_error || intent.last_setup_error);
          show((refusal && refusal.message) || FAILED);
          return;
        }
        returnTo(intent);
      },
      function () {
        show(FAILED);
      }
    );
  });
})();
