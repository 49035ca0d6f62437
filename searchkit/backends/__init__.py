"""Storage backends: the protocols every backend implements, and the factory that picks one."""
