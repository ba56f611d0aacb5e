"""Data: turning data sets (public ones, files, logs) into honed task folders."""
