"""The built-in plugins; each module registers exactly like a third-party plugin."""
