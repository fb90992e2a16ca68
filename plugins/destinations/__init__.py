"""Built-in destinations plugins."""
