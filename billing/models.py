# The ledger, holds, Stripe and crypto deposits arrive with the billing issue.
