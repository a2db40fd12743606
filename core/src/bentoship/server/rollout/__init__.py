"""Rollouts: the revision state machine, the controller, and the processes it runs."""
