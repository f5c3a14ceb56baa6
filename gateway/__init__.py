"""HTTP and Ray Serve wiring: the only room that imports ray.serve."""
