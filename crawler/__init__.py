"""mxcensus crawler: the Scrapy project (spider, download handlers, settings)."""
