"""Container health check: GET /readyz on the service's own HTTP port; exit 0 on 200, 1 otherwise.

The address comes from the service's settings class (``<PREFIX>_HTTP_HOST``/``_HTTP_PORT`` as the service
itself reads them), so the check follows whatever the container is configured with. ``TELECRM_HEALTH_URL``
overrides it. Standard library only, apart from the service's settings.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 4.0  # below the HEALTHCHECK --timeout


def readyz_url() -> str:
    explicit = os.environ.get("TELECRM_HEALTH_URL")
    if explicit:
        return explicit
    from telecrm_common.settings import ServiceSettings

    module = importlib.import_module(f"{os.environ['TELECRM_MODULE']}.settings")
    classes = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, ServiceSettings)
        and cls is not ServiceSettings
        and cls.__module__ == module.__name__
    ]
    if not classes:
        raise RuntimeError(f"no ServiceSettings subclass in {module.__name__}")
    settings = classes[0]()
    host = settings.http_host
    if host in ("", "0.0.0.0", "::"):  # bind-all: reached on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}/readyz"


def main() -> int:
    try:
        url = readyz_url()
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - http to ourselves
            status = response.status
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {exc.code} {exc.read(300).decode(errors='replace')}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0 if status == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
