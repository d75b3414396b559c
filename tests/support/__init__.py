"""Real local stand-ins for the internet, shared by the test suites."""
