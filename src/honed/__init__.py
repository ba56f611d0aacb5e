"""honed: specialize small local LLMs for narrow structured tasks, and prove every step with honest numbers."""

__version__ = "0.1.0"
