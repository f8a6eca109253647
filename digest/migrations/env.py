"""Alembic runs migrations on the engine `digest.db` hands it; there is no alembic.ini URL."""

from alembic import context

from digest.models import Base

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
