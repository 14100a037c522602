"""onepipe: schemas."""
