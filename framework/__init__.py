"""pykratos: a Python microservice framework in the spirit of go-kratos.

The core (this package) depends only on pydantic, PyYAML, dependency-injector and orjson; each
transport lives in ``framework.transport.<name>`` and needs its extra
(``pip install pykratos[http]``, ``[grpc]``, ``[kafka]``, ``[rabbitmq]``, ``[ws]``).
"""

from framework.app import App, AppInfo, AppStartError, app_info
from framework.errors import Error
from framework.transport import Server, Transport, from_context

__all__ = [
    "App",
    "AppInfo",
    "AppStartError",
    "Error",
    "Server",
    "Transport",
    "__version__",
    "app_info",
    "from_context",
]

__version__ = "0.1.0"
