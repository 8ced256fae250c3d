"""What a notebook shows: the live dashboard and plots."""
