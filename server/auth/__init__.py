"""Users, password hashing, JWTs and role checks."""
