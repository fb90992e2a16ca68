"""The models of monitor.yaml and the generated monitor.schema.json."""
