"""Trying sms-outbox without an account: the demo and the `simulator` command."""
