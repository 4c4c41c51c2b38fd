"""The pure rules: decisions as plain functions of data and time, with no I/O."""
