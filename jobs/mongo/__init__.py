"""The MongoDB adapters: the modules that read and write collections."""
