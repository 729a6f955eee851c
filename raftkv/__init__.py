"""raftkv: a Raft-based, strongly consistent configuration store with an etcd v3 compatible API.

The package root only re-exports: the version and the client-visible error classes.
"""

from raftkv.errors import ErrorCode, RaftkvError

__version__ = "0.1.0"

__all__ = ["ErrorCode", "RaftkvError", "__version__"]
