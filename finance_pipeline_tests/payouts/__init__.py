"""Tests of the payouts domain: policy, approvals and quorum, settlement at the payout sandbox."""
