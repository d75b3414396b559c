"""ComfyUI as the worker runs it: its process, client, user, environment and containment."""
