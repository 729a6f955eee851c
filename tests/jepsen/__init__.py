"""Tier c Jepsen-style fault suite (ISSUE 7): real raftkv processes on 127.0.0.1, per-link TCP
proxies, nemeses, workloads and the history checkers of ``raftkv.checker``.

Entry points: ``python -m tests.jepsen.cli`` (wrapped by ``scripts/jepsen``) and the pytest tests
``test_campaign.py`` and ``test_canaries.py`` (marker ``jepsen``).
"""
