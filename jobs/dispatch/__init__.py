"""The send cycle's parts."""
