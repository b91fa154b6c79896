"""Operational drills that prove the backups are usable (see docs/restore-drill.md)."""
