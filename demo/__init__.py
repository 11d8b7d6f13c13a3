"""`make demo`: scan the local test network and compare with its declarations."""
