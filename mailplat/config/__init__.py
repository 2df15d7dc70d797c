"""Pure configuration: YAML -> pydantic models -> compiled Directory. Reads files, writes nothing."""
