"""Authentication and authorisation: passwords, access and refresh tokens, API keys, provider
secrets, rate limits and role-based permissions. Pure domain code: storage, Redis and KMS sit
behind ports (``shared.ports``) and repositories (``shared.db``)."""
