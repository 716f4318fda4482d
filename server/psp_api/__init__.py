"""The API external payment providers call: verify an insuree, pay a policy."""
