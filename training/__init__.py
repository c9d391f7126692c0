"""Training architectures under recipes, and the search for training proxies that keep rankings."""
