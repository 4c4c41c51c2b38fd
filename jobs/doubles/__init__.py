"""Test doubles kept apart from the product code: the Flowroute simulator and a manual clock."""
