"""Green routing: grid-intensity providers, topology, policies and the simulator."""
