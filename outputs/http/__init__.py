"""``MistOutHTTP``: see :mod:`outputs.http.server` for the module map."""
