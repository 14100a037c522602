"""onepipe: tables."""
