"""Query-time code: candidate lists from a backend, ranking arithmetic and fusion."""
