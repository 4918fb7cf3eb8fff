"""The floor: what a bare Django form-and-insert view costs on the same
server, database and middleware, to compare /reset/ with."""
