"""Import advanced-alchemy without its import-time deprecation warnings.

advanced-alchemy 1.12 (the newest release) still decorates its mixins with
``declarative_mixin``, which SQLAlchemy 2.1 deprecates, warning once per mixin at import.
Under ``-W error`` (our test suite) that import would fail. Only migration 0001 (its
``DateTimeUTC`` column type) still imports advanced-alchemy, so ``migrate`` imports this
module before Alembic loads any revision script; the stores do not import advanced-alchemy
at all (it loads Litestar and numpy: a second of every ``llmserver keys`` command). Delete
this module once advanced-alchemy drops the decorator.
"""

import warnings

from sqlalchemy.exc import SADeprecationWarning

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message="The declarative_mixin decorator", category=SADeprecationWarning
    )
    import advanced_alchemy.base  # noqa: F401
