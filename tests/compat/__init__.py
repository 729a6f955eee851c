"""etcd v3 JSON API compatibility tests against real raftkv (and etcd) processes."""
