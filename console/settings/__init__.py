"""Settings for Switchyard.

``base`` is the embedded default (SQLite, django-q2's ORM broker) and reads everything that differs between
machines from the environment. ``production`` hardens it; ``test`` points it at PostgreSQL.
"""
