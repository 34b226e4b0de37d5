"""Alerts: the routine's ``notify:`` targets, told about failures, successes and lateness."""
