"""Turning a reconciled day into a signed proof package: bundle, sign, verify, publish, register."""
