"""The thin PostgreSQL model (SQLAlchemy 2) and the pydantic payloads that cross Temporal."""
