"""mxcensus storage: vocabulary, SQLAlchemy models and SQL views."""
