from entitle.db.base import Base
from entitle.db.database import Database

__all__ = ["Base", "Database"]
