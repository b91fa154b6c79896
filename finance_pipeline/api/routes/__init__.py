"""The Finance API's endpoints, one router per domain: journal, proofs, payouts."""
