"""Helpers shared by tests of several packages, one module per job.

Everything here talks only to 127.0.0.1 / ::1 and every blocking call has a timeout.
"""
