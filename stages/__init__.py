"""One Typer command per DVC stage: read params, call the library, write outputs."""
