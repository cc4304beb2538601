"""The default pipeline: Palmer penguins species classification."""
