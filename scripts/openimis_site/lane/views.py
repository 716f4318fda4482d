"""`POST /_lane/seed`: test glue, mounted only when the settings switch says so."""

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from lane.seeding import SeedError
from lane.seeding import seed as apply_seed


@csrf_exempt
@require_POST
def seed(request: HttpRequest) -> JsonResponse:
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the body must be JSON"}, status=400)
    try:
        with transaction.atomic():
            answer = apply_seed(body)
    except SeedError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse(answer)
