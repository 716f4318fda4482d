"""GET /openapi.json, and GET /docs: Swagger UI served from the installed
swagger-ui-bundle package, so the page loads nothing from the internet."""

from __future__ import annotations

import base64
import hashlib

from swagger_ui_bundle import swagger_ui_path
from tornado.web import HTTPError

from server.ops.page_headers import content_security_policy, protective_headers
from server.web.handler import BaseHandler, StaticFiles
from server.web.operations import FILE_PATH, Operation, page_operations, static_file_operations

ASSETS = "/docs/static"

# validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
START_SCRIPT = """
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      validatorUrl: null,
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis],
      layout: "BaseLayout"
    });
  """

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
  <script>{START_SCRIPT}</script>
</body>
</html>
"""

# The page runs Swagger UI's files and its one inline script (allowed by its hash).
_START_HASH = base64.b64encode(hashlib.sha256(START_SCRIPT.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = content_security_policy(scripts=f"'self' 'sha256-{_START_HASH}'")


class OpenApiHandler(BaseHandler):
    operations = {
        "get": Operation(
            "This OpenAPI document",
            "operations",
            {"type": "object", "description": "OpenAPI 3.0.3"},
        )
    }

    def get(self) -> None:
        self.write_json(self.settings["openapi"]())


class DocsHandler(BaseHandler):
    operations = page_operations("This document in Swagger UI")

    def get(self) -> None:
        # Set here rather than in set_default_headers, so errors still answer JSON.
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        protective_headers(self)
        self.finish(DOCS_PAGE)


# The files DOCS_PAGE loads. The package holds more (its own index.html points at an
# outside demo document), so only these are served.
DOCS_ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})


class DocsAssetHandler(StaticFiles):
    """Swagger UI's own files, from the swagger-ui-bundle package directory."""

    path_parameters = FILE_PATH
    operations = static_file_operations("Swagger UI")

    def initialize(
        self,
        path: str = swagger_ui_path,
        default_filename: str | None = None,
        allowed_symlink_directory: str | list[str] | None = None,
    ) -> None:
        super().initialize(path, default_filename, allowed_symlink_directory)

    async def get(self, path: str, include_body: bool = True) -> None:
        if path not in DOCS_ASSETS:
            raise HTTPError(404)
        await super().get(path, include_body)

    def set_extra_headers(self, path: str) -> None:
        protective_headers(self)
