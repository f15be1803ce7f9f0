"""Tests that run the local zero-key providers and the vector stores for real."""
