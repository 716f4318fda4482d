"""The HTTP application: the route table, the server, the admin collections' handlers."""
