"""Background jobs: the task manager over its task store."""
