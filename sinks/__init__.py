"""onepipe: sinks."""
