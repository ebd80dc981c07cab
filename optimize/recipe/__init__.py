"""The recipe: schema (schema.py), YAML reading (yaml_source.py) and loading (loader.py)."""
