"""Resumable training commands: a time-budgeted loop with checkpoints, a loss log and previews."""
