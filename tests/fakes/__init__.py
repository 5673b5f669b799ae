"""In-memory fakes of Quarry's ports, shared by unit and integration tests."""
