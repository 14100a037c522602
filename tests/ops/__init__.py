"""Operations: several identical workers, and faults survived while producers keep sending."""
