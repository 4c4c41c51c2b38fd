"""Database servers the server-backed tests start and stop."""
