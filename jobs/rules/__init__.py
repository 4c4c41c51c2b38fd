"""The pure rules: decisions about messages made from data and time, without I/O."""
