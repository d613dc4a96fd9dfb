"""Experiment drivers behind the numbered notebooks."""
