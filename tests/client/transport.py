"""cx_client's Transport over Django's test client: the same requests as over HTTP, answered by
the real exchange in the test's database."""

from __future__ import annotations

from cx_client.api import Request, decode_answer


def api_transport(persona, *, on_request=None):
    """Requests as `persona`; `on_request(request)` sees each one first (to count or to process)."""

    def send(request: Request):
        if on_request is not None:
            on_request(request)
        url = "/api/v1/" + request.path
        extra = {"HTTP_ACCEPT": request.accept}
        for name, value in request.headers.items():
            extra["HTTP_" + name.upper().replace("-", "_")] = value
        client = persona.client
        if request.method == "GET":
            response = client.get(url, **extra)
        elif request.file is not None:
            reader = request.file.open()
            try:
                body = b"".join(iter(lambda: reader.read(), b""))
            finally:
                reader.close()
            response = client.generic("POST", url, body, content_type=request.file.content_type, **extra)
        else:
            response = client.post(url, request.json, format="json", **extra)
        if response.streaming:
            content = b"".join(response.streaming_content)
        else:
            content = response.content
        content_type = response.get("Content-Type", "").partition(";")[0].strip()
        return response.status_code, decode_answer(response.status_code, content_type, content)

    return send
