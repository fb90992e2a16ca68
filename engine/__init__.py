"""The engine: config loading, scheduling, evaluation, alerting, backups, API and CLI."""
