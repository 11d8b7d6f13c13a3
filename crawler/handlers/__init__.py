"""Scrapy download handlers for the `dns` and `smtp` URL schemes."""
