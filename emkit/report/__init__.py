"""Plots and the HTML report of a run folder."""
