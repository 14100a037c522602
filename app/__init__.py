"""onepipe: app."""
