"""Settings: the configuration schema, its loader and the hook's cached slice of it."""
