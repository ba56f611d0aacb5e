"""Evaluation: run a task through a backend, parse the outputs, score them with confidence intervals."""
