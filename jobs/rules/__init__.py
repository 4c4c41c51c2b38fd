"""Pure rules: decisions made from data and time alone, with no I/O."""
