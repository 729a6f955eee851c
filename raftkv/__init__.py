"""raftkv: a Raft-based, strongly consistent configuration store with an etcd v3 compatible API.

The package root only re-exports: the version, the client and the client-visible error types.
"""

from raftkv.client import Client, SyncClient
from raftkv.errors import ErrorCode, RaftkvError

__version__ = "0.1.0"

__all__ = ["Client", "ErrorCode", "RaftkvError", "SyncClient", "__version__"]
