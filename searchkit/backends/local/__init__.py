"""The local backend: SQLite (via sqlite-utils) as the source of truth plus FAISS files."""
