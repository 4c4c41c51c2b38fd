"""The MongoDB adapters: the only modules that talk to the database or import pymongo."""
