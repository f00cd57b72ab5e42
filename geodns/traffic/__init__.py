"""Data-driven traffic control (issue 12): load feeds, latency maps, guards."""
