"""Workers: claim jobs, hold leases, run backends, record results."""
