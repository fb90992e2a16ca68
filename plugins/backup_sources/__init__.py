"""Built-in backup sources plugins."""
