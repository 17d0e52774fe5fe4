"""Alembic environment: runs migrations online against the URL given in the config."""

from __future__ import annotations

from alembic import context

import models.suite  # noqa: F401 - registers the suite relation index
from models import tables  # noqa: F401 - registers the tables on Base.metadata
from models.db import Base, make_engine

config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
