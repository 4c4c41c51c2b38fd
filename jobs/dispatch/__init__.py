"""The send cycle: claim, vet, pace, send and record each message, and fan broadcasts out."""
