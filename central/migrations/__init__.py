"""Migrations of the ``orders`` app (``MIGRATION_MODULES`` points here)."""
