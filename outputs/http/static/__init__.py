"""Vendored player libraries (hls.js, dash.js) and their licenses; see NOTICE."""
