"""Training: the loop (plain torch), the Ray Train worker that wraps it, and executors."""
