"""`digest run`: the scheduler, its jobs, its lock and its status."""
