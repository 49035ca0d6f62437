"""Reading files and records into documents, and the write path that embeds and stores them."""
