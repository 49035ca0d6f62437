"""searchkit: semantic search for long documents."""
