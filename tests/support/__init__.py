"""Helpers shared by the test modules (no tests here): config builders, child-process bodies, servers."""
