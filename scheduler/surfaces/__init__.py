"""What the daemon serves and shows: the web app and its /join pages, the webhook receiver,
metrics and health, the dashboard, and the terminal views of `status --watch`."""
