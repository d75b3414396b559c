"""The job policy: which node classes run, what their inputs may be, which models and paths."""
