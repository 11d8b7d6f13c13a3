"""The mxcensus spiders."""
