"""Tier c: real raftkv processes on loopback (TESTING.md §4.3)."""
