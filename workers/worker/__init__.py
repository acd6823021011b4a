"""The worker program: every activity and workflow on the task queue, with its clients."""
