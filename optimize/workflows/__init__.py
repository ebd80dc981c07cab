"""What the API functions do end to end: `run` (a recipe and its outputs) and `rebuild` (one
device class from a stored model). Each returns an outcome and prints nothing."""
