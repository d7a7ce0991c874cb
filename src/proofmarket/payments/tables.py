"""The built-in rails' tables: what the node's migrations (``db/migrations``) hold besides the node's own.

Each rail keeps its tables in its package (``batch/tables.py``: channels, charges, sweeps; ``credits/tables.py``: API
keys, credit entries, passes, free quotas), on the node's one ``Base``. Importing this module puts them on
``Base.metadata`` (Alembic's autogenerate and the schema checks compare against it). A rail from elsewhere declares
its tables on the rail (``tables``, see ``port.py``): the node creates those the migrations do not hold.
"""

from proofmarket.payments.batch import tables as batch_tables
from proofmarket.payments.credits import tables as credits_tables

__all__ = ["batch_tables", "credits_tables"]
