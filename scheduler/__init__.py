"""The daemon shell of sms-outbox: settings, logging, signals, APScheduler and the CLI."""
