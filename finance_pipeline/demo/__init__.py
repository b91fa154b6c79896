"""A realistic, deterministic demo scenario and the commands that load it."""
