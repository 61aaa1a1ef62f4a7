"""The only code that speaks HTTP to the outside world: one module per system, all through ``http.py``."""
