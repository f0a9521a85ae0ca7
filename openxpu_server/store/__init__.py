"""The store port: SQLAlchemy models and the migrated database (SQLite default, PostgreSQL by URL)."""

from .db import Store, default_db_url, now_ms
from .models import Base, Event, Job, JobAttempt, JobTag, Task, TaskAttempt

__all__ = ["Base", "Event", "Job", "JobAttempt", "JobTag", "Store", "Task", "TaskAttempt", "default_db_url", "now_ms"]
