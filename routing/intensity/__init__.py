"""Grid carbon-intensity providers: live APIs, replayed traces and static tables."""
