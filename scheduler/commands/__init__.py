"""The `sms-outbox` commands, one module per group; each registers its own subcommands."""
