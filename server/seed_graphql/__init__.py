"""The payment providers' GraphQL of openIMIS's mobile payment ("seed") module, served by
the gateway at `POST /api/graphql`: the seed's documents, answered in the seed's shapes,
by the services the REST endpoints use (the provider API's verify and pay, the debit
engine's start and process, the auth service's login)."""
