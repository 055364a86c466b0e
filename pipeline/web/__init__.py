"""HTTP faces of a running tracker: the status endpoint."""
