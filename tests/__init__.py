"""Tests of sms-outbox: unit, integration and end-to-end."""
