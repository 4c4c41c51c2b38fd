"""The MongoDB adapters: the only modules that speak to the database server."""
