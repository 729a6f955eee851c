"""Durable node storage: the WAL, snapshot files and ``DiskStorage`` (ARCHITECTURE.md §4.9)."""

from raftkv.storage.disk import DiskStorage, FileOps, NodeMeta, Recovered

__all__ = ["DiskStorage", "FileOps", "NodeMeta", "Recovered"]
