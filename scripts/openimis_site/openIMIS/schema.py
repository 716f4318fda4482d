"""One GraphQL schema over every module's `Query` and `Mutation` classes."""

import importlib

import graphene

from .openimisapps import openimis_apps


def _collect() -> tuple[list[type], list[type]]:
    queries: list[type] = []
    mutations: list[type] = []
    for name in openimis_apps():
        try:
            module = importlib.import_module(f"{name}.schema")
        except ModuleNotFoundError as error:
            if error.name != f"{name}.schema":
                raise
            continue
        if hasattr(module, "Query"):
            queries.append(module.Query)
        if hasattr(module, "Mutation"):
            mutations.append(module.Mutation)
        if hasattr(module, "bind_signals"):
            module.bind_signals()
    return queries, mutations


_queries, _mutations = _collect()


class Query(*_queries, graphene.ObjectType):  # type: ignore[misc]
    pass


class Mutation(*_mutations, graphene.ObjectType):  # type: ignore[misc]
    pass


schema = graphene.Schema(query=Query, mutation=Mutation)
