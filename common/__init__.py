"""Pieces every mistpy program shares: stream names, defaults, logging to the controller."""
