"""Built-in agents, registered through the same hook as third-party ones."""
