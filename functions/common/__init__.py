"""The HTTP plumbing every domain app shares: app factory, errors, middleware, Lambda entry."""
