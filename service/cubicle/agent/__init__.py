"""The agent worker: Claude operates a cubicle desktop through its HTTP API (no X here)."""
