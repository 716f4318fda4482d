"""GET /openapi.json, and GET /docs: Swagger UI served from the installed
swagger-ui-bundle package, so the page loads nothing from the internet."""

from __future__ import annotations

from swagger_ui_bundle import swagger_ui_path
from tornado.web import HTTPError, StaticFileHandler

from server.ops.openapi import openapi_spec
from server.web import BaseHandler, TrackedRequest

ASSETS = "/docs/static"

# validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
DOCS_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>Mobile Payments Gateway API</title>
  <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      validatorUrl: null,
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    }});
  </script>
</body>
</html>
"""


class OpenApiHandler(BaseHandler):
    def get(self) -> None:
        self.write_json(openapi_spec())


class DocsHandler(BaseHandler):
    def get(self) -> None:
        # Set here rather than in set_default_headers, so errors still answer JSON.
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(DOCS_PAGE)


# The files DOCS_PAGE loads. The package holds more (its own index.html points at an
# outside demo document), so only these are served.
DOCS_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})


class DocsAssetHandler(TrackedRequest, StaticFileHandler):
    """Swagger UI's own files, from the swagger-ui-bundle package directory."""

    def initialize(self) -> None:
        super().initialize(path=swagger_ui_path)

    async def get(self, path: str, include_body: bool = True) -> None:
        if path not in DOCS_ASSETS:
            raise HTTPError(404)
        await super().get(path, include_body)
