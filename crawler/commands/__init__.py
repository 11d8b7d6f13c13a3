"""Scrapy commands of mxcensus (COMMANDS_MODULE)."""
