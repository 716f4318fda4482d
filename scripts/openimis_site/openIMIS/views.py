"""The GraphQL view: graphene-django's, with the per-request state the modules expect."""

from django.apps import apps
from graphene_django.views import GraphQLView


class OpenimisGraphQLView(GraphQLView):
    def get_context(self, request):
        # Resolvers read request.dataloaders; modules that batch lookups register
        # theirs (insuree, family, location, product) through their app config.
        request.dataloaders = {}
        for config in apps.get_app_configs():
            if hasattr(config, "set_dataloaders"):
                config.set_dataloaders(request.dataloaders)
        return request
