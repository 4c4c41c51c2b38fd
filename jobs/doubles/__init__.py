"""Test doubles kept apart from the product code: a manual clock and an in-memory outbox."""
