"""Alembic migrations of MedStream's PostgreSQL schema."""
