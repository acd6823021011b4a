"""Workflow histories recorded from releases, replayed on the current code
(tests/test_replay_histories.py); `python -m tests.histories.record` records a release's."""
