"""Pure domain logic (money, canonical JSON, journal rules). No Dagster imports here."""
