"""Run-event loggers."""
