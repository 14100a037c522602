"""onepipe: agents."""
